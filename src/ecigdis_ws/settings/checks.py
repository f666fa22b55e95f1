"""The checks across settings (production's secrets, the pool's sizes, Redis URLs),
made after every setting parsed so that one pass reports every problem."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ecigdis_ws.settings.redis_urls import (
    CLUSTER_SCHEMES,
    REDIS_URL_FORMS,
    is_cluster_url,
    parse_cluster_url,
)

if TYPE_CHECKING:
    from ecigdis_ws.settings.model import Settings

DEV_JWT_SECRET = "ecigdis-ws-development-secret-not-for-production"
# A production secret must be long enough that brute force on HS256 is hopeless.
MIN_PRODUCTION_SECRET_LENGTH = 32
WEAK_SECRETS = frozenset(
    {DEV_JWT_SECRET, "secret", "changeme", "change-me", "your-secret-key", "jwt_secret"}
)


def cross_checks(settings: Settings) -> list[str]:
    problems: list[str] = []
    if settings.is_production:
        secret = settings.jwt_secret or ""
        uses_hmac = any(alg.startswith("HS") for alg in settings.jwt_algorithms)
        if uses_hmac and (len(secret) < MIN_PRODUCTION_SECRET_LENGTH or secret in WEAK_SECRETS):
            problems.append(
                "JWT_SECRET: production needs a secret of at least "
                f"{MIN_PRODUCTION_SECRET_LENGTH} characters that is not a known default"
            )
        if settings.api_key and len(settings.api_key) < MIN_PRODUCTION_SECRET_LENGTH:
            problems.append(f"API_KEY: production needs at least {MIN_PRODUCTION_SECRET_LENGTH} "
                            "characters (or leave it empty to turn /api/server/* off)")
    if settings.db_pool_min > settings.db_pool_max:
        problems.append("DB_POOL_MIN must not be larger than DB_POOL_MAX")
    if not settings.db_table_prefix.replace("_", "").isalnum() and settings.db_table_prefix:
        problems.append("DB_TABLE_PREFIX: letters, digits and _ only")
    problems += _redis_problems(settings)
    if settings.use_https and not (settings.cert_path and settings.key_path):
        problems.append("USE_HTTPS=true needs both CERT_PATH and KEY_PATH")
    if any(not alg.startswith("HS") for alg in settings.jwt_algorithms) and not (
        settings.jwt_public_key_path
    ):
        problems.append("JWT_ALGORITHMS with RS*/ES* needs JWT_PUBLIC_KEY_PATH")
    return problems


def _redis_problems(settings: Settings) -> list[str]:
    url = settings.redis_url
    if not url:
        return []
    schemes = ("redis", "rediss", "redis+sentinel", "unix", *CLUSTER_SCHEMES)
    if not url.startswith(tuple(f"{scheme}://" for scheme in schemes)):
        return [f"REDIS_URL: expected {REDIS_URL_FORMS}"]
    if not is_cluster_url(url):
        return []
    try:
        parse_cluster_url(url)
    except ValueError as exc:
        return [f"REDIS_URL: {exc}"]
    if "{" in settings.redis_key_prefix or "}" in settings.redis_key_prefix:
        # The prefix becomes the keys' hash tag on a cluster: a brace would cut it short.
        return ["REDIS_KEY_PREFIX: no { or } with a Redis Cluster"]
    return []
