"""Every place a template or a task inserts a value checks it (docs/escaping.md, docs/hardening.md): found by walking
every template (the roles' and the render layer's) and every command, shell and copy task of the roles, not from a
list kept by hand, so that a new template or task that prints a value without a filter fails here. A value is checked
when the expression that prints it ends in a filter that refuses or escapes for its sink (or is a constant, a name set
from such an expression, or a role's private variable defined as one); commands take argv lists, never a string split
into words."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import jinja2
import pytest
import yaml
from conftest import ROOT, bin_path
from jinja2 import nodes

from infra.render.escape import FILTERS, UnsafeValue, integer, secret_word

ROLES = ROOT / "playbooks" / "roles"
# The pages (*.html.j2, docs/pages.md) have one sink, HTML, and one check for it: their environment's autoescape
# (test_the_pages_escape_every_value below); every other template prints into a configuration file's syntax.
PAGES = sorted((ROOT / "infra" / "render" / "templates").glob("*.html.j2"))
TEMPLATES = sorted(ROLES.glob("*/templates/**/*.j2")) + sorted(
    p for p in (ROOT / "infra" / "render" / "templates").glob("*.j2") if p not in PAGES)
TASK_FILES = sorted(ROLES.glob("*/tasks/*.yml")) + sorted(ROLES.glob("*/handlers/*.yml"))
# Filters whose output cannot change the structure of what it lands in: the checks of infra/render/escape.py, and
# Ansible's quoting and serialisers (JSON is a valid YAML/TOML scalar; a digest is hex).
SAFE_FILTERS = set(FILTERS) | {"to_json", "to_nice_json", "quote", "hash", "tenant_budget_argv"}
# Filters that pass checked items through unchanged in kind (a list of checked words joined is checked words).
PASS_THROUGH = {"join", "list", "unique", "sort", "first", "last"}
COMMANDS = ("ansible.builtin.command", "ansible.builtin.shell", "ansible.builtin.raw", "command", "shell", "raw")
COPIES = ("ansible.builtin.copy", "copy")
ENV = jinja2.Environment()


def _safe(node: nodes.Node, names: set[str]) -> bool:
    if isinstance(node, nodes.Const):
        return True
    if isinstance(node, nodes.Name):
        return node.name in names or node.name == "ansible_managed"
    if isinstance(node, nodes.Filter):
        if node.name in SAFE_FILTERS:
            return True
        if node.name == "map":
            return bool(node.args) and isinstance(node.args[0], nodes.Const) and node.args[0].value in SAFE_FILTERS
        if node.name == "replace":          # a constant replacement of a checked value (escaping '.' for jsonpath)
            return all(isinstance(a, nodes.Const) for a in node.args) and node.node is not None and _safe(node.node, names)
        return node.name in PASS_THROUGH and node.node is not None and _safe(node.node, names)
    if isinstance(node, nodes.CondExpr):
        return _safe(node.expr1, names) and (node.expr2 is None or _safe(node.expr2, names))
    if isinstance(node, (nodes.Concat, nodes.List, nodes.Tuple)):
        return all(_safe(n, names) for n in (node.nodes if isinstance(node, nodes.Concat) else node.items))
    if isinstance(node, nodes.BinExpr):
        return _safe(node.left, names) and _safe(node.right, names)
    return False


def _names(target: nodes.Node) -> set[str]:
    return {n.name for n in target.find_all(nodes.Name)} | ({target.name} if isinstance(target, nodes.Name) else set())


def _parse(source: str) -> nodes.Template:
    with warnings.catch_warnings():       # a '\.' in a task (a jsonpath's escaped dot) is no Jinja2 string escape
        warnings.simplefilter("ignore", DeprecationWarning)
        return ENV.parse(source)


def unchecked(source: str, names: frozenset[str] = frozenset()) -> list[str]:
    """The printed expressions of a Jinja2 text that no check guards, as source-like text."""
    tree = _parse(source)
    safe = set(names)
    for node in tree.find_all((nodes.Assign, nodes.For)):         # document order: a set before its use
        value = node.node if isinstance(node, nodes.Assign) else node.iter
        if _safe(value, safe):
            safe |= _names(node.target)
    return [_text(expr) for output in tree.find_all(nodes.Output) for expr in output.nodes
            if not isinstance(expr, nodes.TemplateData) and not _safe(expr, safe)]


def _text(node: nodes.Node) -> str:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        return f"{_text(node.node)}.{node.attr}"
    if isinstance(node, nodes.Filter):
        return f"{_text(node.node) if node.node else ''} | {node.name}"
    return type(node).__name__


def checked_private_vars(role: Path) -> frozenset[str]:
    """A role's private variables (vars/main.yml) whose whole value is one checked expression."""
    path = role / "vars" / "main.yml"
    data = yaml.safe_load(path.read_text()) if path.is_file() else None
    return frozenset(k for k, v in (data or {}).items() if isinstance(v, str) and v.strip().startswith("{{")
                     and v.strip().endswith("}}") and v.count("{{") == 1 and not unchecked(v.strip()))


def _tasks(tasks):
    for task in tasks or []:
        if isinstance(task, dict):
            yield task
            for key in ("block", "rescue", "always"):
                yield from _tasks(task.get(key))


def task_problems(path: Path) -> list[str]:
    """What a command, shell or copy task of ``path`` inserts unchecked, or a command given as a string of words."""
    names = checked_private_vars(path.parents[1])
    problems = []
    for task in _tasks(yaml.safe_load(path.read_text())):
        for module in COMMANDS + COPIES:
            if module not in task:
                continue
            args = task[module]
            label = f"{path.relative_to(ROOT) if ROOT in path.parents else path.name}: {task.get('name')!r}"
            if module in COPIES:
                content = args.get("content", "") if isinstance(args, dict) else ""
                whole = content.strip().startswith("{{") and content.strip().endswith("}}") and content.count("{{") == 1
                texts = [] if whole else [content]             # a whole file from one value has no syntax to break
            elif isinstance(args, str) or "cmd" in args:
                text = args if isinstance(args, str) else args["cmd"]
                if "{{" in text and module.endswith("command"):
                    problems.append(f"{label}: a command as a string split into words (use argv)")
                texts = [text] if module.endswith(("shell", "raw")) else []
            else:
                argv = args.get("argv", [])
                texts = ([argv] if isinstance(argv, str) else [str(a) for a in argv]) + [str(args.get("stdin", ""))]
            for text in texts:
                if module.endswith(("shell", "raw")):
                    tree = _parse(text)
                    bad = [_text(e) for o in tree.find_all(nodes.Output) for e in o.nodes
                           if not isinstance(e, nodes.TemplateData) and not (isinstance(e, nodes.Filter) and e.name == "quote")]
                else:
                    bad = unchecked(text, names)
                problems += [f"{label}: {b}" for b in bad]
    return problems


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_value_a_template_prints_passes_a_check_for_its_sink(template):
    names = checked_private_vars(template.parents[1]) if ROLES in template.parents else frozenset()
    assert unchecked(template.read_text(), names) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_pages_escape_every_value(page):
    """A page's values are checked by HTML escaping: the pages' one environment has autoescape on, and no page turns
    it off or marks a value safe (browser tests show hostile names inert: tests/test_plan_page.py, test_usage_page.py)."""
    from infra.render.page import page_environment
    env = page_environment()
    assert env.autoescape is True or (callable(env.autoescape) and env.autoescape(page.name))
    text = page.read_text()
    ast = env.parse(text)
    assert not [f.name for f in ast.find_all(nodes.Filter) if f.name in ("safe", "forceescape")], page
    assert not list(ast.find_all(nodes.EvalContextModifier)), page        # {% autoescape false %}
    assert len(PAGES) >= 3


@pytest.mark.parametrize("tasks", TASK_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_value_a_command_or_copy_task_inserts_passes_a_check(tasks):
    assert task_problems(tasks) == []


def test_the_walk_finds_the_sinks_and_flags_an_unchecked_one(tmp_path):
    assert len(TEMPLATES) >= 38 and len(TASK_FILES) >= 40
    assert unchecked("PriorityWeightTRES={{ slurm.priority_weight_tres }}") == ["slurm.priority_weight_tres"]
    assert unchecked("{% set x = y | one_word %}a={{ x }} b={{ z | int }}") == ["z | int"]
    assert unchecked("{{ xs | map('one_word') | join(' ') }} {{ xs | join(' ') }}") == ["xs | join"]
    role = tmp_path / "r" / "tasks"
    role.mkdir(parents=True)
    (role / "main.yml").write_text(yaml.safe_dump([
        {"name": "words", "ansible.builtin.command": "sacctmgr modify qos where name={{ item.account }}"},
        {"name": "argv", "ansible.builtin.command": {"argv": ["sacctmgr", "name={{ item.account }}"]}},
        {"name": "shell", "ansible.builtin.shell": "echo {{ x }}"}]))
    problems = task_problems(role / "main.yml")
    assert len(problems) == 3 and "string split into words" in problems[0]


@pytest.mark.parametrize("value", [True, 1.5, "1 2", "1\n", "", "-", "0x10", "١٢", "12#", None, float("nan")])
def test_integer_refuses_what_is_not_a_whole_number(value):
    with pytest.raises(UnsafeValue):
        integer(value, "field")


def test_integer_keeps_numbers_and_bounds_them():
    assert integer(8) == 8 and integer("2048") == 2048 and integer("-1") == -1
    with pytest.raises(UnsafeValue, match="outside 0..15"):
        integer(16, "priority", minimum=0, maximum=15)


def test_a_refused_secret_is_never_shown():
    with pytest.raises(UnsafeValue) as err:
        secret_word("hunter2' OR '1", "database password")
    assert "hunter2" not in str(err.value) and "database password" in str(err.value)


def test_sacctmgr_budget_and_caps_are_argv_words_of_whole_numbers():
    from test_slurm_vars import _filters
    f = _filters()
    assert f.tenant_budget_argv({"account": "a", "budget_billing_minutes": 600}) == ["GrpTRESMins=billing=600", "Flags+=NoDecay"]
    assert f.tenant_budget_argv({"account": "a", "budget_billing_minutes": None}) == ["GrpTRESMins=billing=-1", "Flags-=NoDecay"]
    for hostile in ("600 Flags-=NoDecay", "1e9", 1.5, True, "-5"):
        with pytest.raises(ValueError, match="is not a whole number"):
            f.tenant_budget_argv({"account": "a", "budget_billing_minutes": hostile})
    with pytest.raises(ValueError, match="gpus"):
        f.tenant_grptres_arg({"account": "a", "gpus": "8,cpu=-1"})


SACCTMGR = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["SACCTMGR_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
"""
TENANT = {"tenant": "acme-ai", "account": "acme-ai", "fairshare": 40, "gpus": 64, "cpus": None, "nodes": None,
          "budget_billing_minutes": 600}


def run_slurm_tenants(tmp_path: Path, tenants: list[dict]) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    """The slurm_tenants role on this machine against a stand-in sacctmgr that records each argv (and knows nothing)."""
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "sacctmgr").write_text(SACCTMGR.replace("/usr/bin/env python3", sys.executable))
    (stub / "sacctmgr").chmod(0o755)
    log = tmp_path / "argv.jsonl"
    log.write_text("")
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{"hosts": "localhost", "connection": "local", "gather_facts": False,
                                     "vars": {"gigafactory_part": "configure"}, "roles": ["slurm_tenants"]}]))
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"slurm_tenants": tenants, "slurm_tenants_cluster": "riga", "slurm_tenants_members": {}}))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), PATH=f"{stub}:{os.environ['PATH']}", SACCTMGR_LOG=str(log))
    result = subprocess.run([bin_path("ansible-playbook"), "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}",
                             "-e", f"@{extra}", str(play)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return result, [json.loads(line) for line in log.read_text().splitlines()]


def test_sacctmgr_gets_each_site_value_as_one_argument_and_a_hostile_one_is_refused(tmp_path):
    result, calls = run_slurm_tenants(tmp_path, [TENANT])
    assert result.returncode == 0, result.stdout[-3000:]
    assert ["--immediate", "modify", "qos", "where", "name=acme-ai", "set", "GrpTRESMins=billing=600", "Flags+=NoDecay"] in calls
    assert ["--immediate", "add", "account", "acme-ai", "cluster=riga", "description=acme-ai", "organization=acme-ai", "fairshare=40",
            "qos=acme-ai", "defaultqos=acme-ai"] in calls
    result, calls = run_slurm_tenants(tmp_path, [dict(TENANT, account="acme-ai set GrpTRESMins=billing=-1")])
    assert result.returncode != 0 and "tenant account 'acme-ai set GrpTRESMins=billing=-1' holds ' '" in result.stdout
    assert not any("acme-ai" in word for call in calls for word in call)       # sacctmgr never saw the account
    result, calls = run_slurm_tenants(tmp_path, [dict(TENANT, fairshare="40 qos=other")])
    assert result.returncode != 0 and "tenant fairshare '40 qos=other' is not an integer" in result.stdout
