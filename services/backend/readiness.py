"""Whether this process can serve: the broker connection, Redis, and the result subscription."""

from typing import Any

from redis.exceptions import RedisError


async def unavailable(state: Any) -> list[str]:
    """The components that are down, by name (empty: ready). `state` is the app's state, as
    `lifespan` filled it."""
    down = []
    if not state.publisher.ready:
        down.append("rabbitmq")
    try:
        await state.redis.ping()
    except (RedisError, OSError):
        down.append("redis")
    else:
        if not state.waiter.subscribed.is_set():
            down.append("redis-subscription")
    return down
