"""One declaration per option (santa_lsp/config.py): the checks, the reload set, the CLI flags
and the documentation all follow it."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from santa_lsp.cli import build_parser
from santa_lsp.config import (
    MODES,
    OPTIONS,
    Options,
    add_option_arguments,
    declarations,
    markdown_table,
    options_from_args,
)
from santa_lsp.lsp import settings

ROOT = Path(__file__).resolve().parents[2]


def _value_of_kind(kind: type):
    return {bool: True, int: 3, float: 0.5, str: "x"}[kind]


# -- the declarations themselves ----------------------------------------------------------------------
def test_every_field_is_declared_and_its_default_passes_its_own_check():
    assert list(OPTIONS) == [f for f in Options.__dataclass_fields__]
    for declared in OPTIONS.values():
        assert declared.spec.doc and "\n" not in declared.spec.doc, declared.name
        assert declared.check(declared.default) is None, declared.name
        assert isinstance(declared.default, declared.kind) or (declared.nullable and declared.default is None)


def test_bounds_and_choices_are_what_from_dict_enforces():
    for declared in OPTIONS.values():
        if declared.spec.bounds:
            lo, hi = declared.spec.bounds
            step = 1 if declared.kind is int else 0.001
            assert Options.from_dict({declared.key: lo})[1] == []
            assert Options.from_dict({declared.key: hi})[1] == []
            for outside in (lo - step, hi + step):
                opts, errors = Options.from_dict({declared.key: outside})
                assert errors == [f"option '{declared.key}': {outside!r} is outside [{lo}, {hi}]; "
                                  f"using {declared.default!r}"]
                assert getattr(opts, declared.name) == declared.default
        for choice in declared.spec.choices:
            assert getattr(Options.from_dict({declared.key: choice})[0], declared.name) == choice
        if declared.spec.choices:
            assert "expected one of" in Options.from_dict({declared.key: "nope"})[1][0]


def test_to_dict_is_the_wire_form_from_dict_reads_back():
    opts = Options(max_new_tokens=8, revision="main", token_healing=False, top_p=0.5)
    wire = opts.to_dict()
    assert wire["maxNewTokens"] == 8 and wire["tokenHealing"] is False and "max_new_tokens" not in wire
    assert Options.from_dict(wire) == (opts, [])


def test_integral_numbers_take_the_fields_type():
    opts, errors = Options.from_dict({"maxNewTokens": 32.0, "topP": 1, "temperature": 0})
    assert errors == []
    assert type(opts.max_new_tokens) is int and opts.max_new_tokens == 32
    assert type(opts.top_p) is float and type(opts.temperature) is float


def test_from_dict_reports_each_bad_key_and_keeps_the_rest():
    opts, errors = Options.from_dict({"santa": {"maxNewTokens": 0, "mode": "single-line", "bogus": 1,
                                                "model": " ", "revision": 3, "enable": "yes"}})
    assert opts == Options(mode="single-line")
    assert errors == [
        "option 'maxNewTokens': 0 is outside [1, 1024]; using 64",
        "unknown option 'bogus'",
        "option 'model': expected a non-empty string; using 'bigcode/santacoder'",
        "option 'revision': expected a string; using None",
        "option 'enable': expected true/false, got 'yes'; using True",
    ]


def test_the_reload_set_is_the_declared_one():
    assert settings.RELOAD_FIELDS == ("model", "endpoint", "revision", "device", "dtype", "cache_slots", "threads")
    assert set(settings.RELOAD_FIELDS) == {d.name for d in OPTIONS.values() if d.spec.reload}
    assert settings.needs_reload(Options(), Options(threads=2))
    assert not settings.needs_reload(Options(), Options(max_new_tokens=8, mode="multi-line"))


# -- the command line ---------------------------------------------------------------------------------
def _parser(**defaults) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_option_arguments(parser, OPTIONS, defaults=defaults)
    return parser


def test_every_option_can_be_a_flag_and_no_flags_give_the_defaults():
    parser = _parser()
    assert options_from_args(parser.parse_args([])) == Options()
    flags = {d.flag for d in OPTIONS.values()}
    assert {"--max-new-tokens", "--fim-order", "--no-heal", "--prefetch", "--no-enable", "--top-p"} <= flags


def test_flags_set_options_and_are_checked_as_parsed(capsys):
    parser = _parser()
    args = parser.parse_args(["--max-new-tokens", "8", "--mode", "single-line", "--no-heal", "--prefetch",
                              "--suffix-share", "0.5", "--revision", "main", "--endpoint", "http://h:8000/v1"])
    assert options_from_args(args) == Options(max_new_tokens=8, mode="single-line", token_healing=False,
                                              prefetch=True, suffix_share=0.5, revision="main",
                                              endpoint="http://h:8000/v1")
    for argv, message in [(["--max-new-tokens", "0"], "0 is outside [1, 1024]"),
                          (["--max-new-tokens", "many"], "expected an integer, got 'many'"),
                          (["--top-p", "2"], "2.0 is outside [0.01, 1.0]"),
                          (["--endpoint", "gpu-box:8000"], "expected an http:// or https:// URL"),
                          (["--model", " "], "expected a non-empty string"),
                          (["--dtype", "int3"], "invalid choice: 'int3'")]:
        with pytest.raises(argparse.ArgumentError, match=re.escape(message)):
            parser.parse_args(argv)


def test_a_command_may_change_a_default_and_options_from_args_reads_only_its_options():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="task")  # the command's own --mode, not the option
    add_option_arguments(parser, ("max_new_tokens",), defaults={"max_new_tokens": 128})
    args = parser.parse_args([])
    assert options_from_args(args) == Options(max_new_tokens=128)
    assert options_from_args(args, Options(device="cpu")) == Options(max_new_tokens=128, device="cpu")


def test_the_cli_commands_build_their_options_from_the_declarations():
    parser = build_parser()
    complete = parser.parse_args(["complete", "f.py", "--line", "1", "--column", "1", "--max-new-tokens", "8",
                                  "--fim-order", "psm", "--max-latency-ms", "0", "--device", "cpu"])
    assert options_from_args(complete) == Options(max_new_tokens=8, fim_order="psm", max_latency_ms=0, device="cpu")
    evaluate = parser.parse_args(["eval", "--data", "x.jsonl", "--no-heal", "--mode", "task"])
    assert evaluate.mode == "task"
    assert options_from_args(evaluate) == Options(max_new_tokens=128, token_healing=False)
    assert options_from_args(parser.parse_args(["serve", "--model", "bundled"])) == Options(model="bundled")
    assert parser.parse_args(["eval", "--data", "x", "--mode", MODES[-1]]).mode == MODES[-1]


# -- the documentation --------------------------------------------------------------------------------
def test_the_readme_table_is_generated_from_the_declarations():
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- options:[^\n]*-->\n(.*?)\n<!-- /options -->", readme, re.S)
    assert found, "README.md lost its <!-- options --> markers"
    assert found.group(1) == markdown_table(), "README.md's options table is stale: run python -m santa_lsp.config"


def test_declarations_are_json_for_the_editor_tests():
    out = json.loads(json.dumps(declarations()))
    assert out["maxNewTokens"] == {"default": 64, "choices": [], "bounds": [1, 1024], "reload": False,
                                   "doc": OPTIONS["max_new_tokens"].spec.doc}
    assert out["revision"]["default"] is None and out["dtype"]["choices"][0] == "auto"


def test_vscode_package_json_declares_the_same_types_defaults_choices_and_bounds():
    properties = json.loads((ROOT / "editors/vscode/package.json").read_text())["contributes"]["configuration"][
        "properties"]
    json_type = {bool: "boolean", int: "integer", float: "number", str: "string"}
    for declared in OPTIONS.values():
        setting = properties[f"santa.{declared.key}"]
        assert setting["type"] == json_type[declared.kind], declared.key
        assert setting["default"] == ("" if declared.default is None else declared.default), declared.key
        assert setting.get("enum", []) == list(declared.spec.choices), declared.key
        if declared.spec.bounds:
            lo, hi = declared.spec.bounds
            assert setting["minimum"] == lo and setting.get("maximum", hi) == hi, declared.key


def test_editor_docs_list_every_option_with_its_default():
    vscode = (ROOT / "editors/vscode/README.md").read_text()
    nvim = (ROOT / "editors/nvim/doc/santa_lsp.txt").read_text()
    for declared in OPTIONS.values():
        default = declared.default
        shown = "" if default is None else default
        shown = json.dumps(shown) if shown == "" or isinstance(shown, bool) else \
            f"{shown:g}" if isinstance(shown, float) else str(shown)
        assert f"| `santa.{declared.key}` | `{shown}` |" in vscode, declared.key
        lua = "nil" if default is None else json.dumps(default) if not isinstance(default, float) else f"{default:g}"
        assert re.search(rf"^  {declared.key} +`{re.escape(lua)}`", nvim, re.M), declared.key
