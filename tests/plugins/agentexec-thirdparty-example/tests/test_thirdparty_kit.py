import pytest
from agentexec.plugins import load_backend
from agentexec.testing import PluginPackagingSuite, QueueSuite


class TestThirdPartyQueue(QueueSuite):
    @pytest.fixture
    async def queue(self):
        yield load_backend("queue", "thirdparty://kit")  # discovered and selected by URL scheme


class TestThirdPartyPackaging(PluginPackagingSuite):
    distribution = "agentexec-thirdparty-example"
    heavy_modules = ("agentexec_thirdparty_example.backends",)
