"""How `n` choices are made from one request (services/backend/choices.py), without a stack."""

from __future__ import annotations

from services.backend.choices import _key, _seeded
from services.backend.job_service import Idempotency
from services.common.protocol import INT64, SamplingParams


def test_a_given_seed_moves_by_one_per_choice_within_its_range() -> None:
    seeded = SamplingParams(seed=41)
    assert [_seeded(seeded, i).seed for i in range(3)] == [41, 42, 43]
    assert _seeded(SamplingParams(seed=INT64 - 1), 1).seed == -INT64
    assert _seeded(SamplingParams(), 2).seed is None  # none given: each samples on its own


def test_each_choice_has_its_own_idempotency_key() -> None:
    key = Idempotency(key_hash="k", body_hash="b")
    assert [_key(key, i) for i in range(2)] == [
        Idempotency(key_hash="k:0", body_hash="b"),
        Idempotency(key_hash="k:1", body_hash="b"),
    ]
    assert _key(None, 1) is None
