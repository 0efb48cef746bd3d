"""Log lines name an exception by type and message (redis-py 8's repr drops the message)."""

from redis.exceptions import ConnectionError as RedisConnectionError

from services.common.logs import describe


def test_describe_keeps_what_the_repr_of_a_redis_error_drops() -> None:
    e = RedisConnectionError("connection to Redis lost: closed")
    assert "lost" not in repr(e)  # why describe() exists; if redis-py changes, this can go
    assert describe(e) == "ConnectionError: connection to Redis lost: closed"
    assert describe(TimeoutError()) == "TimeoutError"
