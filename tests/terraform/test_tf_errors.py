"""Typed errors carry the stack and Terraform's own `Error:` lines, on one line."""

from __future__ import annotations

from reconciler.errors import ApplyError, LockError, TerraformError
from reconciler.terraform.errors import clean_output, error_summary, from_output

COLOURED = (
    "\x1b[31m╷\x1b[0m\x1b[0m\n"
    "\x1b[31m│\x1b[0m \x1b[0m\x1b[1m\x1b[31mError: \x1b[0m\x1b[0m"
    "\x1b[1mInsufficientInstanceCapacity\x1b[0m\n"
    "\x1b[31m│\x1b[0m \x1b[0m\n"
    "\x1b[31m│\x1b[0m \x1b[0m  with aws_instance.spot[0],\n"
    "\x1b[31m╵\x1b[0m\x1b[0m\n"
)


def test_ansi_and_frames_are_stripped() -> None:
    assert clean_output(COLOURED) == (
        "Error: InsufficientInstanceCapacity\n\n  with aws_instance.spot[0],"
    )
    assert error_summary(COLOURED) == "Error: InsufficientInstanceCapacity"


def test_summary_keeps_every_distinct_error_line() -> None:
    text = "\nError: A\n\n  detail\n\nError: B\n\nError: A\n"
    assert error_summary(text) == "Error: A; Error: B"
    assert error_summary("panic: boom\n\ngoroutine 1\n") == "goroutine 1"
    assert error_summary("") == "no output"


def test_str_names_the_stack_and_command() -> None:
    err = from_output(ApplyError, "local-1", "apply", "\nError: quota\n\n  more\n")
    assert str(err) == "stack local-1: apply failed: Error: quota"
    assert err.detail == "Error: quota\n\n  more"
    assert isinstance(err, TerraformError)
    assert isinstance(LockError("s", "plan", "x"), TerraformError)


def test_a_command_that_could_not_start_says_why() -> None:
    """Found by the user-eye check: an env value too long for exec left only "local-exec
    provisioner error", the reason (E2BIG) dropped."""
    text = (
        "\nError: local-exec provisioner error\n\n"
        '  with module.stack.null_resource.replica["r-0"],\n'
        '  on main.tf line 20, in resource "null_resource" "replica":\n'
        '  20:   provisioner "local-exec" {\n\n'
        "Error running command '\"$HEDGEFORM_BIN\" sandbox replica launch': fork/exec\n"
        "/bin/sh: argument list too long.\n"
    )
    assert error_summary(text) == (
        "Error: local-exec provisioner error (fork/exec /bin/sh: argument list too long)"
    )


def test_an_aws_provider_error_keeps_its_api_code_from_the_lines_below() -> None:
    """Terraform wraps the AWS error below the headline: "Error: creating VPC Security Group
    Rule" alone hid why (found by issue 11's verification)."""
    text = """
Error: creating VPC Security Group Rule

  with module.stack.aws_vpc_security_group_ingress_rule.lb["80-0.0.0.0/0"],
  on ../../main.tf line 165:
 165: resource "aws_vpc_security_group_ingress_rule" "lb" {

operation error EC2: AuthorizeSecurityGroupIngress, https response error StatusCode:
400, RequestID: abc, api error InvalidPermission.Duplicate: the specified rule
already exists
"""
    assert error_summary(text) == (
        "Error: creating VPC Security Group Rule (InvalidPermission.Duplicate: the specified "
        "rule already exists)"
    )
