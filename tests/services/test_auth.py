"""TokenVerifier: a JWT names the user (userId, user_id or sub) and their display name;
it is refused with AUTH_FAILED, saying why, when its signature, times (exp/nbf
against the injected clock, with JWT_LEEWAY_S), issuer, audience or user id are
wrong. Tokens it cannot decide (not a JWT, an algorithm it holds no key for) are
`TokenUndecided`, for the main site to judge; everything else is decided here.
`mint_token` signs tokens the verifier accepts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ecigdis_ws.clock import ManualClock
from ecigdis_ws.domain import Identity
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.services.auth import (
    MAX_TOKEN_LENGTH,
    TokenExpired,
    TokenUndecided,
    TokenVerifier,
    mint_token,
)
from tests.support import test_settings as settings_for

SECRET = "test-secret-that-is-long-enough-for-production-use"
LEEWAY_S = 30  # JWT_LEEWAY_S's default


def verifier(tmp_path: Path, clock: ManualClock | None = None, **env: str) -> TokenVerifier:
    return TokenVerifier(settings_for(tmp_path, **env), clock or ManualClock())


def now(clock: ManualClock | None = None) -> int:
    return int((clock or ManualClock()).now())


def sign(claims: dict[str, Any] | str, key: str | bytes = SECRET, algorithm: str = "HS256",
         headers: dict[str, Any] | None = None) -> str:
    """A token with exactly these claims (or this payload text), unchecked by PyJWT."""
    payload = claims if isinstance(claims, str) else json.dumps(claims)
    return jwt.PyJWS().encode(payload.encode(), key, algorithm, headers)


def claims(**extra: Any) -> dict[str, Any]:
    """The claims of a good token for user 1, an hour from expiry, with `extra`."""
    return {"userId": 1, "name": "Alice", "exp": now() + 3600, **extra}


def b64(part: dict[str, Any] | bytes) -> str:
    raw = part if isinstance(part, bytes) else json.dumps(part).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def refusal(verifier: TokenVerifier, token: object) -> ChatError:
    """The AUTH_FAILED the verifier decided on (not left to the main site)."""
    with pytest.raises(ChatError) as caught:
        verifier.verify(token)
    assert not isinstance(caught.value, TokenUndecided), caught.value.message
    assert caught.value.code is ErrorCode.AUTH_FAILED
    return caught.value


def undecided(verifier: TokenVerifier, token: object) -> TokenUndecided:
    with pytest.raises(TokenUndecided) as caught:
        verifier.verify(token)
    assert caught.value.code is ErrorCode.AUTH_FAILED
    return caught.value


@pytest.fixture
def es256_key(tmp_path: Path) -> tuple[bytes, Path]:
    """An ES256 private key (PEM) and the path of its public key."""
    private = ec.generate_private_key(ec.SECP256R1())
    public_path = tmp_path / "jwt-public.pem"
    public_path.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ))
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private_pem, public_path


# -- who the token names --------------------------------------------------------------


def test_a_minted_token_names_its_user_and_name_and_expires_at_its_exp(tmp_path: Path) -> None:
    clock = ManualClock()
    settings = settings_for(tmp_path)
    token = mint_token(settings, clock, 42, "Grace", ttl_s=600)

    identity = TokenVerifier(settings, clock).verify(token)

    assert identity == Identity(user_id=42, name="Grace", expires_at=now(clock) + 600.0)


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ({"userId": 1, "user_id": 2, "sub": "3"}, 1),
        ({"user_id": 2, "sub": "3"}, 2),
        ({"sub": "3"}, 3),
        ({"userId": None, "user_id": 2, "sub": "3"}, 2),  # a null claim is no claim
    ],
)
def test_the_user_id_is_read_from_userid_then_user_id_then_sub(
    tmp_path: Path, ids: dict[str, Any], expected: int
) -> None:
    token = sign({"exp": now() + 60, **ids})

    assert verifier(tmp_path).verify(token).user_id == expected


@pytest.mark.parametrize("ids", [{}, {"userId": None, "user_id": None}])
def test_a_token_naming_no_user_is_refused(tmp_path: Path, ids: dict[str, Any]) -> None:
    error = refusal(verifier(tmp_path), sign({"exp": now() + 60, "name": "Nobody", **ids}))

    assert error.message == "token names no user (userId, user_id or sub)"


@pytest.mark.parametrize(
    ("raw", "expected"), [(7, 7), ("42", 42), ("007", 7), (2**63 - 1, 2**63 - 1)]
)
def test_an_int_user_id_may_be_a_positive_integer_or_its_decimal_text(
    tmp_path: Path, raw: object, expected: int
) -> None:
    assert verifier(tmp_path).verify(sign(claims(userId=raw))).user_id == expected


@pytest.mark.parametrize(
    "raw",
    [0, -1, 2**63, True, False, 1.0, "abc", "12a", "", " 12", "-3", "١٢", [1], {"id": 1}],
)
def test_an_int_user_id_that_is_not_a_positive_63_bit_integer_is_refused(
    tmp_path: Path, raw: object
) -> None:
    error = refusal(verifier(tmp_path), sign(claims(userId=raw)))

    assert error.message == "user id is not a valid int"


@pytest.mark.parametrize("user_id_type", ["int", "string"])
def test_a_user_id_of_5000_digits_is_refused_before_any_conversion(
    tmp_path: Path, user_id_type: str
) -> None:
    # int() of the text (or str() of the int) would raise ValueError past Python's
    # 4,300-digit limit: a 500 on REST, a leaked session at the handshake.
    check = verifier(tmp_path, USER_ID_TYPE=user_id_type)
    huge_text = sign(claims(userId="7" * 5000))
    huge_int = sign('{"userId": ' + "7" * 4000 + ', "exp": ' + str(now() + 60) + "}")

    for token in (huge_text, huge_int):
        assert refusal(check, token).message == f"user id is not a valid {user_id_type}"


@pytest.mark.parametrize(
    ("raw", "expected"), [("emp-0042", "emp-0042"), (42, "42"), ("x" * 64, "x" * 64)]
)
def test_a_string_user_id_is_1_to_64_printable_characters(
    tmp_path: Path, raw: object, expected: str
) -> None:
    token = sign(claims(userId=raw))

    assert verifier(tmp_path, USER_ID_TYPE="string").verify(token).user_id == expected


@pytest.mark.parametrize("raw", ["", "x" * 65, "emp\n42", "tab\there", True, 4.5, ["a"]])
def test_a_string_user_id_that_is_empty_too_long_or_unprintable_is_refused(
    tmp_path: Path, raw: object
) -> None:
    error = refusal(verifier(tmp_path, USER_ID_TYPE="string"), sign(claims(userId=raw)))

    assert error.message == "user id is not a valid string"


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ({"name": "Alice", "username": "alice"}, "Alice"),
        ({"username": "alice"}, "alice"),
        ({"name": "   ", "username": "alice"}, "alice"),  # a blank name is no name
        ({"name": 5, "username": "alice"}, "alice"),  # nor is one that is not text
        ({"name": ""}, "1"),  # no name at all: the user id, as text
        ({}, "1"),
    ],
)
def test_the_name_is_name_then_username_then_the_user_id(
    tmp_path: Path, names: dict[str, Any], expected: str
) -> None:
    token = sign({"userId": 1, "exp": now() + 60, **names})

    assert verifier(tmp_path).verify(token).name == expected


def test_a_name_longer_than_255_characters_is_cut_not_refused(tmp_path: Path) -> None:
    token = sign(claims(name="é" * 300))

    assert verifier(tmp_path).verify(token).name == "é" * 255


# -- times ----------------------------------------------------------------------------


def test_a_token_is_accepted_until_exp_plus_the_leeway(tmp_path: Path) -> None:
    clock = ManualClock()
    check = verifier(tmp_path, clock)
    token = sign(claims(exp=now(clock) + 60))

    clock.advance(60 + LEEWAY_S)

    assert check.verify(token).user_id == 1


def test_a_token_past_exp_plus_the_leeway_is_refused_as_expired(tmp_path: Path) -> None:
    clock = ManualClock()
    check = verifier(tmp_path, clock)
    token = sign(claims(exp=now(clock) + 60))

    clock.advance(60 + LEEWAY_S + 0.5)

    error = refusal(check, token)
    assert isinstance(error, TokenExpired)  # the REST API answers TOKEN_EXPIRED for it
    assert error.message == "token expired"


def test_without_leeway_a_token_is_refused_the_moment_after_exp(tmp_path: Path) -> None:
    clock = ManualClock()
    check = verifier(tmp_path, clock, JWT_LEEWAY_S="0")
    token = sign(claims(exp=now(clock) + 60))
    clock.advance(60)
    assert check.verify(token).user_id == 1

    clock.advance(0.5)

    assert isinstance(refusal(check, token), TokenExpired)


def test_a_token_is_not_valid_before_nbf_minus_the_leeway(tmp_path: Path) -> None:
    clock = ManualClock()
    check = verifier(tmp_path, clock)
    early = sign(claims(nbf=now(clock) + LEEWAY_S + 1))
    almost = sign(claims(nbf=now(clock) + LEEWAY_S))

    assert refusal(check, early).message == "token not yet valid"
    assert check.verify(almost).user_id == 1
    clock.advance(1)
    assert check.verify(early).user_id == 1


@pytest.mark.parametrize(
    ("times", "claim"),
    [
        ({"exp": "2099-01-01"}, "exp"),
        ({"exp": True}, "exp"),
        ({"nbf": "yesterday"}, "nbf"),
        ({"nbf": False}, "nbf"),
        ({"nbf": [0]}, "nbf"),
    ],
)
def test_exp_and_nbf_must_be_numbers(
    tmp_path: Path, times: dict[str, Any], claim: str
) -> None:
    error = refusal(verifier(tmp_path), sign(claims(**times)))

    assert error.message == f"{claim!r} must be a number"


def test_an_exp_of_nan_is_not_a_number(tmp_path: Path) -> None:
    # Python's JSON reader (PyJWT's) accepts NaN, which is no JSON number. A NaN exp
    # compares false with everything: such a token would never expire here, and
    # its expiry timer, call_later(nan), raises ValueError under uvloop (and fires at
    # once under asyncio's own loop).
    token = sign('{"userId": 1, "exp": NaN}')

    error = refusal(verifier(tmp_path), token)

    assert error.message == "'exp' must be a number"


@pytest.mark.parametrize("claim", ["userId", "exp"])
def test_a_payload_holding_an_integer_past_4300_digits_is_refused(
    tmp_path: Path, claim: str
) -> None:
    # PyJWT's JSON reader raises ValueError on it; that must stay AUTH_FAILED.
    fields = {"userId": "1", "exp": str(now() + 60), claim: "7" * 5000}
    token = sign("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}")

    assert refusal(verifier(tmp_path), token).message == "invalid token: DecodeError"


@pytest.mark.parametrize("claim", ["exp", "nbf"])
def test_a_time_too_large_for_a_float_is_not_a_number(tmp_path: Path, claim: str) -> None:
    # math.isfinite(10**400) raises OverflowError rather than answering.
    token = sign(claims(**{claim: 10**400}))

    assert refusal(verifier(tmp_path), token).message == f"{claim!r} must be a number"


MAX_TTL_S = 30 * 86400  # JWT_MAX_TTL_S's default


def test_a_token_expiring_within_jwt_max_ttl_s_is_accepted(tmp_path: Path) -> None:
    token = sign(claims(exp=now() + MAX_TTL_S + LEEWAY_S))

    assert verifier(tmp_path).verify(token).user_id == 1


@pytest.mark.parametrize("exp", [now() + MAX_TTL_S + LEEWAY_S + 1, 1e30, 2**62])
def test_a_token_expiring_further_ahead_than_jwt_max_ttl_s_is_refused(
    tmp_path: Path, exp: float
) -> None:
    error = refusal(verifier(tmp_path), sign(claims(exp=exp)))

    assert error.message == f"token expires more than JWT_MAX_TTL_S ({MAX_TTL_S} s) from now"


def test_jwt_max_ttl_s_follows_the_setting_and_0_turns_it_off(tmp_path: Path) -> None:
    token = sign(claims(exp=now() + 7200))

    refusal(verifier(tmp_path, JWT_MAX_TTL_S="3600"), token)
    assert verifier(tmp_path, JWT_MAX_TTL_S="0").verify(token).user_id == 1


def test_a_token_without_exp_is_not_touched_by_jwt_max_ttl_s(tmp_path: Path) -> None:
    check = verifier(tmp_path, JWT_REQUIRE_EXP="false", JWT_MAX_TTL_S="60")

    assert check.verify(sign({"userId": 1})).expires_at is None


@pytest.mark.parametrize("times", [{}, {"exp": None}])
def test_a_token_without_exp_is_refused_by_default(
    tmp_path: Path, times: dict[str, Any]
) -> None:
    error = refusal(verifier(tmp_path), sign({"userId": 1, **times}))

    assert error.message == "token has no 'exp' claim"


def test_a_token_without_exp_never_expires_when_exp_is_not_required(tmp_path: Path) -> None:
    clock = ManualClock()
    check = verifier(tmp_path, clock, JWT_REQUIRE_EXP="false")
    token = sign({"userId": 1, "name": "Alice"})
    clock.advance(10 * 365 * 86400)

    identity = check.verify(token)

    assert identity == Identity(user_id=1, name="Alice", expires_at=None)
    assert check.expires_in(identity) is None


def test_expires_in_counts_down_to_exp_plus_the_leeway(tmp_path: Path) -> None:
    clock = ManualClock()
    check = verifier(tmp_path, clock)
    identity = check.verify(sign(claims(exp=now(clock) + 100)))

    assert check.expires_in(identity) == 100 + LEEWAY_S
    clock.advance(40)
    assert check.expires_in(identity) == 60 + LEEWAY_S


# -- signature, algorithm, issuer and audience ----------------------------------------


def test_a_token_signed_with_another_secret_has_a_bad_signature(tmp_path: Path) -> None:
    token = sign(claims(), key="another-secret-that-is-also-long-enough-for-it")

    assert refusal(verifier(tmp_path), token).message == "bad signature"


def test_a_token_whose_payload_was_altered_has_a_bad_signature(tmp_path: Path) -> None:
    header, _payload, signature = sign(claims(userId=1)).split(".")
    forged = f"{header}.{b64(claims(userId=2))}.{signature}"

    assert refusal(verifier(tmp_path), forged).message == "bad signature"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_an_unsigned_token_is_refused_and_never_left_to_the_main_site(
    tmp_path: Path, alg: str
) -> None:
    token = f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(claims())}."

    assert refusal(verifier(tmp_path), token).message == "unsigned tokens are never accepted"


def test_a_token_whose_header_names_no_algorithm_is_refused_as_unsigned(tmp_path: Path) -> None:
    token = f"{b64({'typ': 'JWT'})}.{b64(claims())}.c2ln"

    assert refusal(verifier(tmp_path), token).message == "unsigned tokens are never accepted"


def test_a_token_in_an_algorithm_not_accepted_is_left_undecided(tmp_path: Path) -> None:
    token = sign(claims(), key=SECRET * 2, algorithm="HS512")

    assert undecided(verifier(tmp_path), token).message == "algorithm 'HS512' not accepted"


def test_a_token_signed_with_the_configured_public_keys_private_key_is_accepted(
    tmp_path: Path, es256_key: tuple[bytes, Path]
) -> None:
    private_pem, public_path = es256_key
    check = verifier(tmp_path, JWT_ALGORITHMS="HS256,ES256",
                     JWT_PUBLIC_KEY_PATH=str(public_path))

    identity = check.verify(sign(claims(userId=9), key=private_pem, algorithm="ES256"))

    assert identity.user_id == 9


def test_an_hmac_token_keyed_with_the_public_key_is_refused(
    tmp_path: Path, es256_key: tuple[bytes, Path]
) -> None:
    # The classic algorithm confusion: HS256 "signed" with the (public) PEM text.
    _private_pem, public_path = es256_key
    check = verifier(tmp_path, JWT_ALGORITHMS="HS256,ES256",
                     JWT_PUBLIC_KEY_PATH=str(public_path))
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(claims())}"
    mac = hmac.new(public_path.read_bytes(), signing_input.encode(), hashlib.sha256).digest()

    error = refusal(check, f"{signing_input}.{b64(mac)}")

    assert error.message == "bad signature"


def test_the_issuer_and_audience_are_required_when_configured(tmp_path: Path) -> None:
    check = verifier(tmp_path, JWT_ISSUER="portal", JWT_AUDIENCE="chat")

    assert check.verify(sign(claims(iss="portal", aud="chat"))).user_id == 1
    assert check.verify(sign(claims(iss="portal", aud=["web", "chat"]))).user_id == 1
    assert refusal(check, sign(claims(iss="elsewhere", aud="chat"))).message == "wrong issuer"
    assert refusal(check, sign(claims(iss=5, aud="chat"))).message == "wrong issuer"
    assert refusal(check, sign(claims(iss="portal", aud="other"))).message == "wrong audience"
    assert refusal(check, sign(claims(aud="chat"))).message == "token has no 'iss' claim"
    assert refusal(check, sign(claims(iss="portal"))).message == "token has no 'aud' claim"


def test_issuer_and_audience_are_ignored_when_not_configured(tmp_path: Path) -> None:
    token = sign(claims(iss="anyone", aud="anything"))

    assert verifier(tmp_path).verify(token).user_id == 1


def test_a_minted_token_carries_the_configured_issuer_and_audience(tmp_path: Path) -> None:
    clock = ManualClock()
    settings = settings_for(tmp_path, JWT_ISSUER="portal", JWT_AUDIENCE="chat")
    token = mint_token(settings, clock, 5, "Eve", ttl_s=60)

    assert TokenVerifier(settings, clock).verify(token).user_id == 5
    assert jwt.decode(token, options={"verify_signature": False})["iss"] == "portal"


def test_minting_needs_an_hmac_algorithm(
    tmp_path: Path, es256_key: tuple[bytes, Path]
) -> None:
    settings = settings_for(tmp_path, JWT_ALGORITHMS="ES256",
                             JWT_PUBLIC_KEY_PATH=str(es256_key[1]))

    with pytest.raises(ValueError, match="HS"):
        mint_token(settings, ManualClock(), 1, "Alice", ttl_s=60)


# -- what is not a token ---------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", 123, b"eyJ.eyJ.sig", {"token": "x"}, ["x"]])
def test_a_token_that_is_not_a_non_empty_string_is_refused(
    tmp_path: Path, token: object
) -> None:
    assert refusal(verifier(tmp_path), token).message == "token must be a non-empty string"


def test_a_token_over_8_kib_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    check = verifier(tmp_path)

    assert refusal(check, "a" * (MAX_TOKEN_LENGTH + 1)).message == "token too long"
    # At the limit it is read, and found to be no JWT.
    assert undecided(check, "a" * MAX_TOKEN_LENGTH).message == "token is not a JWT"


@pytest.mark.parametrize("token", ["é" * 10, "eyJ.eyJ.sïg", "\ud800"])
def test_a_token_that_is_not_ascii_is_refused_and_never_left_to_the_main_site(
    tmp_path: Path, token: str
) -> None:
    error = refusal(verifier(tmp_path), token)

    assert error.message == "token is not ASCII (neither a JWT nor a session token)"


@pytest.mark.parametrize("token", ["opaque-session-token", "a.b.c", "eyJhbGciOiJIUzI1NiJ9"])
def test_a_token_that_is_not_a_jwt_is_left_to_the_main_site(
    tmp_path: Path, token: str
) -> None:
    assert undecided(verifier(tmp_path), token).message == "token is not a JWT"


def test_a_signed_token_whose_payload_is_not_json_is_refused(tmp_path: Path) -> None:
    error = refusal(verifier(tmp_path), sign("not json at all"))

    assert error.message == "invalid token: DecodeError"
