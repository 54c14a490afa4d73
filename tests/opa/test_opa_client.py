"""The emulated OPA's verifier against the test vectors derived from OPA's hash.go, so the
bundle tests rest on a checker that is itself checked."""

import hashlib

import pytest

from tests.opa.opa_client import _loads_keeping_numbers, opa_canonical, opa_file_digest


@pytest.mark.parametrize(
    ("name", "content", "digest"),
    [
        ("data.json", b'{"b": 1, "a": [true, null, "x<y"]}',
         "70a6b5931400ed48bbcfe082d0a38b650334df5220d7d0c84bd2b22f53321f67"),
        (".manifest", b'{"roots": ["authz"], "revision": "v1"}',
         "30a9d5660f1a9c205827a107275650d0219caf0e2d5b5ff3b2169201c798c03b"),
        ("data.json", b"{}", "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"),
        ("authz.rego", b"package authz\n\nallow := true\n",
         "6e1e454be82d6a0fb76a1c8ef9c34f528c349b7bd760db2a28ea85729e44fecd"),
    ],
)
def test_digests_match_opa_vectors(name, content, digest):
    assert opa_file_digest(name, content) == digest


def test_canonical_form_keeps_number_literals_and_go_string_escapes():
    value = _loads_keeping_numbers('{"z": 1.0, "a": 1e3, "s": "<&>\\u2028\\u0001\\b é"}')
    assert opa_canonical(value) == '{"a":1e3,"s":"<&>\\u2028\\u0001\\b é","z":1.0}'


def test_unstructured_files_hash_raw_bytes_even_when_json():
    content = b'{"b": 1,  "a": 2}'
    assert opa_file_digest("x/patch.json", content) == hashlib.sha256(content).hexdigest()
