import pytest
from django.utils import timezone

from keys.crypto import generate_key
from keys.models import ApiKey
from keys.services import api_key_revoke, api_key_rotate
from testing.assertions import assert_envelope

ME = "/v1/me"


def flip_last_char(key: str) -> str:
    return key[:-1] + ("A" if key[-1] != "A" else "B")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token ltx_abc",
        "Bearer ltx_",
        "Bearer ltx_short",
        "Bearer sk_test_0123456789012345678901234567890123",
        "Bearer ltx_" + "a" * 36 + "extra",
        "Bearer ltx_" + "!" * 36,
        "Bearer ltx_" + "é" * 36,
    ],
    ids=[
        "empty",
        "scheme-only",
        "scheme-space",
        "basic",
        "token-scheme",
        "prefix-only",
        "short",
        "other-vendor",
        "too-long",
        "bad-chars",
        "non-ascii",
    ],
)
def test_malformed_key_is_401_without_a_query(
    api_client, django_assert_num_queries, registered, header
):
    with django_assert_num_queries(0):
        response = api_client.get(ME, HTTP_AUTHORIZATION=header)

    assert_envelope(response, 401, "INVALID_API_KEY")
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.django_db
def test_mistyped_key_fails_its_checksum_without_a_query(
    api_client, django_assert_num_queries, registered
):
    with django_assert_num_queries(0):
        response = api_client.get(
            ME, HTTP_AUTHORIZATION=f"Bearer {flip_last_char(registered.api_key)}"
        )
    assert_envelope(response, 401, "INVALID_API_KEY")


@pytest.mark.django_db
def test_valid_key_costs_one_query(api_client, django_assert_num_queries, registered):
    with django_assert_num_queries(1):
        response = api_client.get(ME, **registered.auth)
    assert response.status_code == 200


@pytest.mark.django_db
def test_well_formed_unknown_key_is_401(api_client, registered):
    response = api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {generate_key().key}")
    assert_envelope(response, 401, "INVALID_API_KEY")


@pytest.mark.django_db
def test_scheme_is_case_insensitive(api_client, registered):
    response = api_client.get(ME, HTTP_AUTHORIZATION=f"bearer {registered.api_key}")
    assert response.status_code == 200


@pytest.mark.django_db
def test_rotated_and_revoked_keys_get_the_same_answer_as_unknown(api_client, make_agent):
    rotated = make_agent(name="rotated")
    api_key_rotate(api_key=ApiKey.objects.get(agent=rotated.agent))
    revoked = make_agent(name="revoked")
    api_key_revoke(api_key=ApiKey.objects.get(agent=revoked.agent), reason="compromised")

    answers = [
        api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {key}")
        for key in (rotated.api_key, revoked.api_key, generate_key().key)
    ]

    bodies = [assert_envelope(r, 401, "INVALID_API_KEY") for r in answers]
    assert bodies[0] == bodies[1] == bodies[2]


@pytest.mark.django_db
def test_revocation_is_final(make_agent):
    registered = make_agent()
    api_key = ApiKey.objects.get(agent=registered.agent)
    assert api_key_revoke(api_key=api_key) is True
    first_revoked_at = ApiKey.objects.get(pk=api_key.pk).revoked_at

    assert api_key_revoke(api_key=api_key) is False
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at == first_revoked_at
    assert first_revoked_at is not None and first_revoked_at <= timezone.now()
