"""File-level errors: missing files, YAML syntax, empty documents; messages stay one-liners."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import SpecError
from reconciler.spec import load_spec


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value) == f"{path}: no such service file"


def test_yaml_syntax_error_gives_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("service:\n  readiness_probe: /health\n  replicas: [1, 2\nrun: x\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:4: YAML syntax error: ")
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_file_is_an_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match="empty service file"):
        load_spec(path)


def test_document_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- service\n- resources\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.problems == ("(document): must be a mapping, got a list",)


def test_spec_error_is_a_value_error_with_source_prefixed_lines(tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text("service:\n  replicas: 0\n")
    with pytest.raises(ValueError) as caught:
        load_spec(path)
    assert isinstance(caught.value, SpecError)
    assert str(caught.value) == f"{path}: service.replicas: must be from 1 to 1000, got 0"


def test_name_comes_from_file_stem_not_yaml_name(tmp_path: Path) -> None:
    path = tmp_path / "my-svc.yaml"
    path.write_text("name: something-else\nservice:\n  replicas: 2\n")
    spec = load_spec(path)
    assert spec.name == "my-svc"
    assert spec.service.replica_policy.min_replicas == 2


def test_bad_file_stem_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "My_Service.yaml"
    path.write_text("service:\n  replicas: 1\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.problems[0].startswith("(service name): 'My_Service'")


def test_an_integer_too_long_to_load_is_one_line(tmp_path: Path) -> None:
    """A 5,000-digit integer made PyYAML raise ValueError (a traceback)."""
    path = tmp_path / "huge.yaml"
    path.write_text(f"service:\n  replicas: {'9' * 5000}\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}: a value YAML cannot load")
    assert "\n" not in str(caught.value)


def test_a_spec_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("service: " + "[" * 20000 + "]" * 20000 + "\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert "\n" not in str(caught.value)


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    """SkyServe's loader keeps the last one silently; here it is one line naming the key."""
    path = tmp_path / "dup.yaml"
    path.write_text(
        "service:\n  readiness_probe:\n    path: /health\n"
        "    timeout_seconds: 0\n    timeout_seconds: 1\n"
    )
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert (
        str(caught.value) == f"{path}:5: YAML syntax error: found duplicate key 'timeout_seconds'"
    )


def test_a_string_utf8_cannot_encode_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sur.yaml"
    path.write_text('service:\n  readiness_probe: "/h\\ud800"\n')
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value) == f"{path}: a string holds a character UTF-8 cannot encode"
