"""`service.tls` (issue 17, item 5): served by the sandbox, refused on the clouds, and its files
checked where the spec is loaded, each problem one line naming the field and never the key."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.errors import SpecError
from reconciler.spec import parse_spec
from reconciler.spec.fingerprint import fingerprint, replica_fingerprint
from reconciler.spec.model import TLSFiles
from tests.spec.conftest import BASE
from tests.tlsfiles import Pair, make_pair

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    return make_pair(tmp_path / "tls")


def _doc(keyfile: object, certfile: object, cloud: str = "local") -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    region = {"local": "local-1", "aws": "us-east-1", "gcp": "us-central1", "azure": "eastus"}
    doc["resources"].update(cloud=cloud, region=region[cloud])
    doc["service"]["tls"] = {"keyfile": keyfile, "certfile": certfile}
    return doc


def _problems(doc: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(SpecError) as refused:
        parse_spec(doc, name="svc", source="svc.yaml")
    return refused.value.problems


def test_the_sandbox_takes_the_files_as_absolute_paths(pair: Pair) -> None:
    spec = parse_spec(_doc(str(pair.keyfile), str(pair.certfile)), name="svc", source="s")
    assert spec.service.tls == TLSFiles(keyfile=str(pair.keyfile), certfile=str(pair.certfile))


def test_a_tilde_and_a_relative_path_are_made_absolute(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SkyServe expands `~`; a relative path is taken from where hedgeform runs."""
    monkeypatch.setenv("HOME", str(pair.keyfile.parent))
    monkeypatch.chdir(pair.certfile.parent)
    spec = parse_spec(_doc("~/endpoint.key", "endpoint.crt"), name="svc", source="s")
    assert spec.service.tls == TLSFiles(keyfile=str(pair.keyfile), certfile=str(pair.certfile))


@pytest.mark.parametrize(
    ("cloud", "words"),
    [
        ("aws", "import the certificate into ACM and name it per region in "),
        ("gcp", "the gcp module takes no certificate from Hedgeform yet"),
        ("azure", "Azure's layer-4 load balancer cannot terminate TLS"),
    ],
)
def test_each_cloud_refuses_it_in_one_line_saying_why_and_what_instead(
    pair: Pair, cloud: str, words: str
) -> None:
    (line,) = _problems(_doc(str(pair.keyfile), str(pair.certfile), cloud))
    assert line.startswith(f"service.tls: served by the local sandbox only: on {cloud} ")
    assert "the private key would land in Terraform's state" in line
    assert words in line


def test_a_sandbox_and_a_cloud_location_together_are_refused_for_the_cloud(pair: Pair) -> None:
    doc = _doc(str(pair.keyfile), str(pair.certfile))
    del doc["resources"]["cloud"], doc["resources"]["region"]
    doc["resources"]["any_of"] = [{"infra": "local/local-1"}, {"infra": "aws/us-east-1"}]
    (line,) = _problems(doc)
    assert line.startswith("service.tls: served by the local sandbox only: on aws ")


def test_a_missing_file_is_one_line_naming_the_field_and_path(pair: Pair) -> None:
    gone = pair.keyfile.with_name("gone.key")
    assert _problems(_doc(str(gone), str(pair.certfile))) == (
        f"service.tls.keyfile: no such file: {gone}",
    )


def test_a_directory_is_refused(pair: Pair) -> None:
    (line,) = _problems(_doc(str(pair.keyfile), str(pair.certfile.parent)))
    assert line == f"service.tls.certfile: is a directory, not a PEM file: {pair.certfile.parent}"


def test_a_fifo_is_refused_without_blocking(pair: Pair) -> None:
    fifo = pair.keyfile.with_name("fifo")
    os.mkfifo(fifo)
    (line,) = _problems(_doc(str(fifo), str(pair.certfile)))
    assert line.startswith("service.tls.keyfile: is not a regular file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_key_is_refused(pair: Pair) -> None:
    pair.keyfile.chmod(0)
    (line,) = _problems(_doc(str(pair.keyfile), str(pair.certfile)))
    assert line.startswith("service.tls.keyfile: is not readable by this user")


def test_files_swapped_are_refused_without_showing_the_key(pair: Pair) -> None:
    """The key given as the certificate: the line says what is missing, and no key text."""
    problems = _problems(_doc(str(pair.certfile), str(pair.keyfile)))
    assert problems == (
        f"service.tls.keyfile: holds no PEM private key (-----BEGIN ... PRIVATE KEY-----): "
        f"{pair.certfile}",
        f"service.tls.certfile: holds no PEM certificate (-----BEGIN CERTIFICATE-----): "
        f"{pair.keyfile}",
    )
    assert not any(line in " ".join(problems) for line in pair.key_lines())


def test_an_encrypted_key_is_refused_saying_how_to_decrypt_it(pair: Pair) -> None:
    encrypted = pair.keyfile.with_name("enc.key")
    encrypted.write_text(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
    )
    (line,) = _problems(_doc(str(encrypted), str(pair.certfile)))
    assert line.startswith("service.tls.keyfile: is an encrypted private key")
    assert "openssl pkey" in line


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"keyfile": "/k"}, "service.tls.certfile: required: the path of a PEM file"),
        ({"keyfile": "/k", "certfile": 3}, "service.tls.certfile: must be a string, got 3"),
        ({"keyfile": " ", "certfile": "/c"}, "service.tls.keyfile: must be a path, got an empty"),
        ({"key": "/k", "certfile": "/c"}, "service.tls.key: unknown field; did you mean 'keyfile'"),
        ("/k", "service.tls: must be a mapping"),
    ],
)
def test_the_shape_is_skyserves(value: object, expected: str) -> None:
    doc = _doc("/k", "/c")
    doc["service"]["tls"] = value
    problems = _problems(doc)
    assert any(line.startswith(expected) for line in problems), problems


def test_tls_changes_the_service_fingerprint_but_not_what_replicas_run(pair: Pair) -> None:
    """A pair on the sandbox is a change of the service (its paths), not of what replicas
    run; and a spec without `tls` keeps the fingerprint it had before the field existed (its
    recorded versions stay the same version)."""
    plain = copy.deepcopy(BASE)
    assert fingerprint(parse_spec(plain, name="svc", source="s")) == (
        "2e672704d16dfc1ecf60d54517f78784d7754a1d8e6041efe69b1ab0074a72c2"
    )
    with_tls = _doc(str(pair.keyfile), str(pair.certfile))
    plain["resources"] = copy.deepcopy(with_tls["resources"])
    a = parse_spec(plain, name="svc", source="s")
    b = parse_spec(with_tls, name="svc", source="s")
    assert replica_fingerprint(a) == replica_fingerprint(b)
    assert fingerprint(a) != fingerprint(b)


def test_plan_prints_one_error_line_and_exits_1_for_a_bad_keyfile(
    tmp_path: Path, pair: Pair
) -> None:
    from reconciler.cli import main

    gone = tmp_path / "gone.key"
    (tmp_path / "services").mkdir()
    service = tmp_path / "services" / "tls.yaml"
    tls = f"service:\n  tls:\n    keyfile: {gone}\n    certfile: {pair.certfile}\n"
    service.write_text((REPO / "services" / "llama.yaml").read_text().replace("service:\n", tls))
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    result = CliRunner().invoke(main, ["plan", "tls", "--root", str(tmp_path), "--render-only"])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.strip()]
    assert errors == [f"Error: {service}: service.tls.keyfile: no such file: {gone}"]
    assert "Traceback" not in result.output


def test_a_location_without_a_cloud_is_refused_saying_to_name_the_sandbox(pair: Pair) -> None:
    doc = _doc(str(pair.keyfile), str(pair.certfile))
    del doc["resources"]["cloud"], doc["resources"]["region"]
    (line,) = _problems(doc)
    assert line.startswith("service.tls: served by the local sandbox only: a location without")
    assert line.endswith("name cloud: local")


def test_a_key_this_user_cannot_read_is_refused(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the previous test, where root reads any file: the read itself is refused."""
    from reconciler.spec import tls

    real = tls._read

    def refuse(path: str) -> bytes:
        if path == str(pair.keyfile):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(tls, "_read", refuse)
    (line,) = _problems(_doc(str(pair.keyfile), str(pair.certfile)))
    assert line == (
        f"service.tls.keyfile: is not readable by this user (permission denied): {pair.keyfile}"
    )
