"""The kit catches real bugs: each deliberately broken backend of ``broken/`` (one realistic
one-line bug each, across every protocol and optional capability) fails the kit on the test that
names its bug, and on no test unrelated to it.

Catch rate of these 65 backends: 25 of the first 60 with the kit before issue 19, all 65 now
(issue 23 added five, for the change feed, the schedule records and the control stream; see
docs/backends.md). Every kit test added by issue 19 is the bug test of at least one of them, so
each is proven able to fail. Issue 15 added four more (task locks and enqueue keys), each caught.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

BROKEN = Path(__file__).parent / "broken"

#: suite -> (fixture name, module of its broken backends)
SUITES = {
    "QueueSuite": ("queue", "broken_queues"),
    "ResultsSuite": ("results", "broken_results"),
    "EventsSuite": ("events", "broken_events"),
    "ActivityStoreSuite": ("activity_store", "broken_activity"),
}

#: the memory backends answer in microseconds: the broken ones run with tighter (faster)
#: thresholds than the kit's defaults, which needs no reason
FAST = {
    "QueueSuite": "lease_timeout_s = 0.1\n    expiry_slack_s = 0.1\n",
    "ResultsSuite": "",
    "EventsSuite": "delivery_within_s = 0.3\n",
    "ActivityStoreSuite": "",
}

#: what the memory reference backends declare; the broken ones inherit it
CAPABILITIES = "Capabilities(replay=True, activity_metadata=True)"

#: broken backend -> (its suite, the kit test named after its bug, the other tests it fails)
CAUGHT_BY: dict[str, tuple[str, str, set[str]]] = {
    # -- queues ---------------------------------------------------------------------------------
    "LosesHighPriorityQueue": ("QueueSuite", "test_high_priority_is_taken_before_low", {
        "test_push_many_keeps_each_priority", "test_reserve_many_takes_up_to_max_count_in_priority_order",
    }),
    "DoubleLeaseQueue": ("QueueSuite", "test_concurrent_consumers_get_each_task_exactly_once", {
        "test_push_at_wakes_a_waiting_consumer_and_keeps_priorities",  # its take skips the due tasks
    }),
    "NeverRedeliversQueue": ("QueueSuite", "test_expired_lease_is_redelivered_to_the_front", {
        "test_reap_leaves_live_consumers_alone", "test_dead_letter_after_max_attempts",
        "test_requeue_dead_and_purge_dead", "test_one_consumer_across_several_queues",
        "test_a_waiting_consumer_is_woken_by_release_reap_and_requeue",
    }),
    "AckRemovesOldestQueue": ("QueueSuite", "test_leases_of_one_consumer_are_acked_in_any_order", {
        "test_ack_many_acknowledges_every_lease_given", "test_one_consumer_across_several_queues",
    }),
    "ReapCrossesQueuesQueue": ("QueueSuite", "test_one_consumer_across_several_queues", set()),
    "ReserveKeepsFirstBeatQueue": ("QueueSuite", "test_a_lease_is_not_reaped_before_it_expires", set()),
    "WholeSecondTimeoutQueue": ("QueueSuite", "test_reserve_on_empty_queue_returns_none_after_timeout", {
        "test_reserve_many_waits_and_wakes_like_reserve",
        "test_push_at_hands_a_task_out_no_earlier_than_its_due_time",
    }),
    "WholeSecondLeaseQueue": ("QueueSuite", "test_a_lease_is_not_reaped_before_it_expires", {
        "test_heartbeat_keeps_the_lease", "test_reap_leaves_live_consumers_alone",
    }),
    "ReapToTheBackQueue": ("QueueSuite", "test_expired_lease_is_redelivered_to_the_front", {
        "test_reap_consumer_hands_back_one_consumers_tasks_at_once",
        "test_in_flight_lists_one_consumers_tasks_oldest_first", "test_one_consumer_across_several_queues",
    }),
    "OffByOneDeadLetterQueue": ("QueueSuite", "test_dead_letter_after_max_attempts", {
        "test_requeue_dead_and_purge_dead", "test_reap_consumer_dead_letters_past_max_attempts",
        "test_dead_letters_are_listed_oldest_first", "test_a_waiting_consumer_is_woken_by_release_reap_and_requeue",
    }),
    "ReapConsumerNeverDeadLettersQueue": ("QueueSuite", "test_reap_consumer_dead_letters_past_max_attempts", {
        "test_dead_letters_are_listed_oldest_first",
    }),
    "ReleaseToTheBackQueue": ("QueueSuite", "test_release_puts_the_task_back_at_the_front", {
        "test_a_counted_lock_admits_up_to_its_limit",
        "test_a_waiting_consumer_is_woken_by_release_reap_and_requeue",  # reserve takes from the front: the released task is not there
    }),
    "ReleaseCountsAnAttemptQueue": ("QueueSuite", "test_release_puts_the_task_back_at_the_front", {
        "test_a_counted_lock_admits_up_to_its_limit",
        "test_a_waiting_consumer_is_woken_by_release_reap_and_requeue",
    }),
    "DeadLettersNewestFirstQueue": ("QueueSuite", "test_dead_letters_are_listed_oldest_first", {
        "test_dead_letters_lists_100_by_default",
    }),
    "DeadLettersShortDefaultQueue": ("QueueSuite", "test_dead_letters_lists_100_by_default", set()),
    "ClampedAttemptsQueue": ("QueueSuite", "test_out_of_range_attempts_are_dead_lettered", set()),
    "MalformedStopsReserveQueue": ("QueueSuite", "test_malformed_payload_is_dead_lettered", {
        "test_reserve_many_dead_letters_malformed_payloads", "test_dead_letters_lists_100_by_default",
        "test_out_of_range_attempts_are_dead_lettered",
    }),
    "ReserveManyOverTakesQueue": ("QueueSuite", "test_reserve_many_takes_up_to_max_count_in_priority_order", set()),
    "ReserveManyNotInFlightQueue": ("QueueSuite", "test_reserve_many_takes_up_to_max_count_in_priority_order", set()),
    "ReserveManyDoesNotWaitQueue": ("QueueSuite", "test_reserve_many_waits_and_wakes_like_reserve", set()),
    "AckManyAcksFirstOnlyQueue": ("QueueSuite", "test_ack_many_acknowledges_every_lease_given", {
        "test_ack_many_ends_locks_and_keys_as_ack_does",
    }),
    "AckManyTokensOnlyQueue": ("QueueSuite", "test_ack_many_ends_locks_and_keys_as_ack_does", set()),
    "InFlightAcrossConsumersQueue": ("QueueSuite", "test_in_flight_lists_one_consumers_tasks_oldest_first", set()),
    "ClosedForGoodQueue": ("QueueSuite", "test_close_then_use_again", set()),
    "WakesNobodyQueue": ("QueueSuite", "test_reserve_wakes_when_a_task_is_pushed", {
        "test_reserve_many_waits_and_wakes_like_reserve", "test_a_waiting_consumer_is_woken_by_release_reap_and_requeue",
        "test_a_consumer_that_gives_up_leaves_the_others_waiting",
    }),
    "LateReleaseRequeuesQueue": ("QueueSuite", "test_a_late_ack_or_release_after_a_reap_changes_nothing", {
        "test_a_counted_lock_admits_up_to_its_limit",  # its own release/remove skips the lock bookkeeping
    }),
    "ReleaseWakesNobodyQueue": ("QueueSuite", "test_a_waiting_consumer_is_woken_by_release_reap_and_requeue", {
        "test_a_counted_lock_admits_up_to_its_limit",  # its own release/remove skips the lock bookkeeping
    }),
    "GivingUpDropsOthersQueue": ("QueueSuite", "test_a_consumer_that_gives_up_leaves_the_others_waiting", set()),
    "RemoveBySubstringQueue": ("QueueSuite", "test_remove_takes_one_waiting_task_out_by_its_agent_id", {
        "test_remove_finds_a_parked_task",
        "test_remove_finds_a_delayed_task",  # it looks in the queue only
    }),
    "RemoveTakesInFlightQueue": ("QueueSuite", "test_remove_never_takes_a_task_in_flight", set()),
    "DelayIgnoredQueue": ("QueueSuite", "test_push_at_hands_a_task_out_no_earlier_than_its_due_time", {
        "test_push_at_wakes_a_waiting_consumer_and_keeps_priorities",
    }),
    "DueWaitsForTimeoutQueue": ("QueueSuite", "test_push_at_hands_a_task_out_no_earlier_than_its_due_time", {
        "test_push_at_wakes_a_waiting_consumer_and_keeps_priorities",
    }),
    "LockIgnoredQueue": ("QueueSuite", "test_acquire_parks_a_task_whose_key_is_held_and_others_flow", {
        "test_a_counted_lock_admits_up_to_its_limit", "test_unlock_frees_the_locks_before_the_ack", "test_a_dead_holders_locks_are_released_by_the_reap",
        "test_remove_finds_a_parked_task", "test_ack_many_ends_locks_and_keys_as_ack_does",
    }),
    "UnlockWakesNobodyQueue": ("QueueSuite", "test_acquire_parks_a_task_whose_key_is_held_and_others_flow", {
        "test_a_counted_lock_admits_up_to_its_limit", "test_a_dead_holders_locks_are_released_by_the_reap",
        "test_unlock_frees_the_locks_before_the_ack", "test_ack_many_ends_locks_and_keys_as_ack_does",
    }),
    "ReapKeepsLocksQueue": ("QueueSuite", "test_a_dead_holders_locks_are_released_by_the_reap", set()),
    "KeyNeverReleasedQueue": ("QueueSuite", "test_an_enqueue_key_is_held_until_its_task_is_acknowledged", {
        "test_ack_many_ends_locks_and_keys_as_ack_does",
    }),
    # -- results --------------------------------------------------------------------------------
    "WaitMissesEarlyValueResults": ("ResultsSuite", "test_wait_returns_a_value_set_before_the_wait", {
        "test_value_expires_after_ttl", "test_close_then_use_again",
    }),
    "RacyClaimResults": ("ResultsSuite", "test_claim_is_exactly_once_under_concurrency", set()),
    "TtlInMillisecondsResults": ("ResultsSuite", "test_value_expires_after_ttl", set()),
    "NeverExpiresResults": ("ResultsSuite", "test_value_expires_after_ttl", set()),
    "ClaimTtlInMillisecondsResults": ("ResultsSuite", "test_claim_expires_after_ttl", set()),
    "SetManyWakesNobodyResults": ("ResultsSuite", "test_set_many_stores_each_and_wakes_each_waiter", set()),
    "SetManyFirstOnlyResults": ("ResultsSuite", "test_set_many_stores_each_and_wakes_each_waiter", {
        "test_set_many_keeps_the_last_value_of_an_id_given_twice",
    }),
    "SetManyFirstValueWinsResults": (
        "ResultsSuite", "test_set_many_keeps_the_last_value_of_an_id_given_twice", set(),
    ),
    "StagedNeverExpiresResults": ("ResultsSuite", "test_a_staged_outcome_expires_after_its_ttl", set()),
    "GetFallsBackToStagedResults": ("ResultsSuite", "test_a_staged_outcome_is_kept_apart_from_results", set()),
    "WakesOneWaiterResults": ("ResultsSuite", "test_every_waiter_is_woken", set()),
    "PollingWaitResults": ("ResultsSuite", "test_wait_wakes_when_the_value_is_set", {
        "test_set_many_stores_each_and_wakes_each_waiter",
        "test_a_waiter_that_times_out_leaves_the_others_waiting",
    }),
    "WholeSecondWaitResults": ("ResultsSuite", "test_wait_times_out_with_timeout_error", set()),
    "DeleteForgetsNothingResults": ("ResultsSuite", "test_delete_forgets_the_value", set()),
    "GivingUpDropsOthersResults": ("ResultsSuite", "test_a_waiter_that_times_out_leaves_the_others_waiting", set()),
    "ClosedForGoodResults": ("ResultsSuite", "test_close_then_use_again", set()),
    "ScheduleAddReadsThenWritesResults": (
        "ResultsSuite", "test_add_schedule_record_is_set_if_absent_under_concurrency", set(),
    ),
    "ScheduleRecordsOneHashResults": ("ResultsSuite", "test_schedule_records_are_kept_per_queue", set()),
    # -- events ---------------------------------------------------------------------------------
    "LazySubscribeEvents": ("EventsSuite", "test_subscription_is_live_once_entered", {
        # every test that publishes before the first read
        "test_subscriber_receives_only_matching_channels", "test_several_patterns_and_exact_channels",
        "test_every_subscriber_receives_each_event", "test_events_arrive_in_publish_order",
        "test_a_late_subscriber_gets_only_later_events", "test_publish_many_delivers_each_message_in_order",
        "test_close_then_use_again",
        # and the resume check, which must happen on entering too
        "test_a_trimmed_resume_point_raises_event_gap_error", "test_events_never_evict_control_messages",
    }),
    "LateSubscriberGetsHistoryEvents": ("EventsSuite", "test_a_late_subscriber_gets_only_later_events", {
        "test_events_never_evict_control_messages",  # its live subscription replays the burst
    }),
    "ReplayIncludesLastIdEvents": ("EventsSuite", "test_resume_after_last_id", {
        "test_a_trimmed_resume_point_raises_event_gap_error", "test_logs_never_evict_events",
        "test_events_never_evict_control_messages",
    }),
    "SharedControlStreamEvents": ("EventsSuite", "test_events_never_evict_control_messages", set()),
    "PrefixPatternEvents": ("EventsSuite", "test_several_patterns_and_exact_channels", set()),
    "FirstSubscriberOnlyEvents": ("EventsSuite", "test_every_subscriber_receives_each_event", set()),
    "PublishManyReversedEvents": ("EventsSuite", "test_publish_many_delivers_each_message_in_order", set()),
    "PublishManyFirstOnlyEvents": ("EventsSuite", "test_publish_many_delivers_each_message_in_order", set()),
    "PublishMixedByChannelEvents": ("EventsSuite", "test_publish_mixed_delivers_each_message_in_order", set()),
    "ReplayAllChannelsEvents": ("EventsSuite", "test_resume_after_last_id", {
        "test_a_trimmed_resume_point_raises_event_gap_error",
    }),
    # -- activity -------------------------------------------------------------------------------
    "FirstLogStatusStore": ("ActivityStoreSuite", "test_status_comes_from_the_latest_log", {
        "test_append_without_status_keeps_the_current_status", "test_list_filters_by_status",
        "test_cancel_pending_cancels_exactly_queued_and_running", "test_async_twins",
        "test_aappend_many_is_all_or_nothing", "test_writes_after_a_final_status_keep_it",
        "test_alist_pages_and_filters_like_list", "test_acancel_pending_like_cancel_pending",
    }),
    "MetadataFirstKeyOnlyStore": ("ActivityStoreSuite", "test_metadata_is_stored_and_filterable", set()),
    "MetadataAnyKeyStore": ("ActivityStoreSuite", "test_metadata_is_stored_and_filterable", {
        "test_metadata_filters_are_typed_exact_and_carried",
    }),
    "AcreateDropsMetadataStore": ("ActivityStoreSuite", "test_metadata_is_stored_and_filterable", set()),
    "AlistIgnoresStatusStore": ("ActivityStoreSuite", "test_alist_pages_and_filters_like_list", {
        "test_metadata_filters_are_typed_exact_and_carried",
    }),
    "AlistFirstPageStore": ("ActivityStoreSuite", "test_alist_pages_and_filters_like_list", {
        "test_metadata_filters_are_typed_exact_and_carried",
    }),
    "NoteReopensStore": ("ActivityStoreSuite", "test_writes_after_a_final_status_keep_it", {
        "test_aappend_many_is_all_or_nothing",
    }),
    "CancelsFinishedStore": ("ActivityStoreSuite", "test_cancel_pending_cancels_exactly_queued_and_running", {
        "test_writes_after_a_final_status_keep_it", "test_acancel_pending_like_cancel_pending",
    }),
    "AcancelQueuedOnlyStore": ("ActivityStoreSuite", "test_acancel_pending_like_cancel_pending", set()),
    "ClosedForGoodStore": ("ActivityStoreSuite", "test_aclose_then_use_again", set()),
    "ChangesNewestFirstStore": ("ActivityStoreSuite", "test_changes_hand_out_new_lines_in_id_order", {
        "test_changes_honour_limit_and_also",  # its pages of two are the two newest lines
    }),
    "ChangesIgnoreAlsoStore": ("ActivityStoreSuite", "test_changes_honour_limit_and_also", set()),
    "PercentageFromFirstLogStore": ("ActivityStoreSuite", "test_latest_percentage_is_the_latest_non_null", {
        "test_aappend_many_is_all_or_nothing", "test_percentage_bounds_0_and_100_are_accepted",
        "test_async_twins", "test_writes_after_a_final_status_keep_it",
        "test_metadata_filters_are_typed_exact_and_carried", "test_aclose_then_use_again",
    }),
}


def suites_module() -> str:
    lines = [
        "import pytest",
        "from agentexec.testing import ActivityStoreSuite, Capabilities, EventsSuite, QueueSuite, ResultsSuite",
    ]
    for backend, (suite, _bug, _others) in CAUGHT_BY.items():
        fixture, module = SUITES[suite]
        lines += [
            f"from {module} import {backend}",
            f"class Test{backend}({suite}):",
            f"    capabilities = {CAPABILITIES}",
            f"    {FAST[suite]}",
            "    @pytest.fixture",
            f"    def {fixture}(self):",
            f"        return {backend}()",
            "",
        ]
    return "\n".join(lines)


def outcomes(junit: Path) -> dict[str, dict[str, set[str]]]:
    """class name -> outcome ("failed", "passed", "skipped") -> test names."""
    found: dict[str, dict[str, set[str]]] = {}
    for case in ET.parse(junit).iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        name = case.get("name", "").split("[", 1)[0]
        kinds = {child.tag for child in case}
        outcome = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        found.setdefault(cls, {}).setdefault(outcome, set()).add(name)
    return found


@pytest.mark.slow
@pytest.mark.timeout(300)  # 65 backends through the whole kit: ~100 s on a loaded 2-core machine
def test_each_broken_backend_fails_the_kit_on_the_test_naming_its_bug(pytester: pytest.Pytester) -> None:
    for source in BROKEN.glob("broken_*.py"):
        shutil.copy(source, pytester.path / source.name)
    pytester.makepyfile(test_broken_backends=suites_module())
    junit = pytester.path / "junit.xml"
    # a subprocess with xdist workers: the suites mostly sleep, so this divides the time
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "8", f"--junitxml={junit}")
    found = outcomes(junit)
    assert set(found) == {f"Test{b}" for b in CAUGHT_BY}, f"suites that ran: {sorted(found)}"
    escaped = sorted(b for b in CAUGHT_BY if not found[f"Test{b}"].get("failed"))
    assert not escaped, f"the kit let these broken backends pass: {escaped}"
    wrong = {
        backend: sorted(found[f"Test{backend}"].get("failed", set()))
        for backend, (_suite, bug, others) in CAUGHT_BY.items()
        if found[f"Test{backend}"].get("failed", set()) != {bug} | others
    }
    assert not wrong, f"the kit failed these broken backends on unexpected tests: {wrong}"


def test_every_kit_test_added_by_issue_19_is_proven_able_to_fail() -> None:
    """Each test a broken backend is caught by exists in the kit (no typo in this table), and
    each kit test is named by some broken backend or listed as proven elsewhere."""
    import agentexec.testing as kit

    suites = {name: getattr(kit, name) for name in SUITES}
    kit_tests = {(name, t) for name, suite in suites.items() for t in suite._kit_tests}
    named = {(suite, bug) for suite, bug, _ in CAUGHT_BY.values()}
    named |= {(suite, t) for suite, _, others in CAUGHT_BY.values() for t in others}
    assert named <= kit_tests, f"unknown kit tests in CAUGHT_BY: {sorted(named - kit_tests)}"
    unproven = sorted(kit_tests - named - PROVEN_ELSEWHERE)
    assert not unproven, f"kit tests no broken backend fails: {unproven}"


#: kit tests that no broken backend above fails, and why that is fine
PROVEN_ELSEWHERE = {
    # the basics every other test relies on: a backend failing them fails nearly everything
    ("QueueSuite", "test_push_then_reserve_returns_the_envelope"),
    ("QueueSuite", "test_low_priority_is_first_in_first_out"),
    ("QueueSuite", "test_queues_are_isolated_by_name"),
    ("QueueSuite", "test_length_counts_waiting_tasks_not_in_flight"),
    ("QueueSuite", "test_acked_task_is_never_handed_out_again"),
    ("QueueSuite", "test_stats_reports_depth_in_flight_and_consumers"),
    ("ResultsSuite", "test_set_then_get"),
    ("ResultsSuite", "test_set_overwrites"),
    ("ResultsSuite", "test_wait_ignores_other_ids"),
    ("EventsSuite", "test_publish_without_subscribers_is_fine"),
    ("ActivityStoreSuite", "test_create_is_queued_with_its_message"),
    ("ActivityStoreSuite", "test_detail_of_unknown_id_is_none"),
    ("ActivityStoreSuite", "test_append_to_unknown_id_names_it"),
    ("ActivityStoreSuite", "test_percentage_out_of_range_is_rejected_and_not_written"),
    ("ActivityStoreSuite", "test_detail_logs_are_in_order"),
    ("ActivityStoreSuite", "test_list_pages_newest_first"),
    ("ActivityStoreSuite", "test_find_prefix_finds_ids_by_their_start"),
}
