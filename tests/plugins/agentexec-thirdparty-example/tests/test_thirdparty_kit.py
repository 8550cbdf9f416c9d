import pytest
from agentexec.plugins import load_backend
from agentexec.testing import PluginPackagingSuite, PoolSuite, QueueSuite


class TestThirdPartyQueue(QueueSuite):
    @pytest.fixture
    async def queue(self):
        yield load_backend("queue", "thirdparty://kit")  # discovered and selected by URL scheme


class TestThirdPartyPackaging(PluginPackagingSuite):
    distribution = "agentexec-thirdparty-example"
    heavy_modules = ("agentexec_thirdparty_example.backends",)


class TestThirdPartyPool(PoolSuite):  # a real ax.Pool on it, events and activities on SQLite
    @pytest.fixture
    def pool_env(self, tmp_path):
        return {"AGENTEXEC_QUEUE_BACKEND": "thirdparty://pool",
                "AGENTEXEC_RESULTS_BACKEND": "thirdparty://pool",
                "AGENTEXEC_DATABASE_URL": f"sqlite:///{tmp_path / 'agentexec.db'}"}
