"""The load test's scenarios and the bars they are held to."""

from __future__ import annotations

from email_sender.ops.loadtest import SCENARIOS, LoadResult, sample_search


def held_to(scenario: str, **figures: float) -> LoadResult:
    chosen = SCENARIOS[scenario]
    values = {"requests": 1000, "errors": 0, "seconds": 1.0, "p95_ms": 10.0, **figures}
    return LoadResult(
        requests=int(values["requests"]), errors=int(values["errors"]),
        seconds=values["seconds"], p95_ms=values["p95_ms"], scenario=chosen.name,
        min_rps=chosen.min_rps, max_p95_ms=chosen.max_p95_ms,
    )


def test_send_is_held_to_1000_requests_a_second_under_100_ms() -> None:
    assert held_to("send").meets_seed_bar
    assert not held_to("send", requests=999).meets_seed_bar
    assert not held_to("send", p95_ms=100.0).meets_seed_bar
    assert not held_to("send", errors=1).meets_seed_bar
    assert held_to("send").bar == ">= 1000 req/s, p95 < 100 ms, no errors"


def test_search_is_held_to_50_ms_with_no_throughput_bar() -> None:
    assert SCENARIOS["search"].concurrency == 100
    assert SCENARIOS["search"].path == "/api/v1/search"
    assert held_to("search", requests=10).meets_seed_bar
    assert not held_to("search", p95_ms=50.0).meets_seed_bar
    assert not held_to("search", errors=1).meets_seed_bar
    assert held_to("search").bar == "p95 < 50 ms, no errors"
    figures = held_to("search").as_dict()
    assert (figures["scenario"], figures["max_p95_ms"], figures["min_rps"]) == ("search", 50.0, 0.0)


def test_search_queries_vary_so_the_cache_cannot_answer_them_all() -> None:
    queries = [sample_search(n)["query"] for n in range(1000)]
    assert len(set(queries)) == len(queries)
    assert all(sample_search(n)["limit"] == 10 for n in range(5))
