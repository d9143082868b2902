"""The type stubs (python/exospec/_core.pyi) describe the module as it is."""
import ast
import inspect
import pathlib
import re

import exospec
from exospec import _core

STUB = pathlib.Path(exospec.__file__).with_name("_core.pyi")


def stub_tree():
    tree = ast.parse(STUB.read_text())
    funcs, classes = {}, {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            funcs[node.name] = node
        elif isinstance(node, ast.ClassDef):
            members = {}
            for m in node.body:
                if isinstance(m, ast.FunctionDef):
                    members[m.name] = m
                elif isinstance(m, ast.AnnAssign):
                    members[m.target.id] = m
            classes[node.name] = members
    return funcs, classes


def arg_names(fn):
    a = fn.args
    return [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg != "self"]


def doc_arg_names(obj):
    """Parameter names from pybind11's signature line ("name(a: T, *, b: U = x) -> R")."""
    first = obj.__doc__.splitlines()[0]
    inner = first[first.index("(") + 1:first.rindex(") ->")]
    names = []
    depth, cur = 0, ""
    for ch in inner + ",":
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            cur = cur.strip()
            if cur and cur != "*" and not cur.startswith("self"):
                names.append(re.split(r"[:=]", cur)[0].strip())
            cur = ""
        else:
            cur += ch
    return names


def test_every_public_name_is_in_the_stub_and_back():
    funcs, classes = stub_tree()
    public = {n for n in dir(_core) if not n.startswith("__")}
    stubbed = set(funcs) | set(classes) | {"__version__", "SCHEMA_VERSION"}
    assert public - stubbed == set(), "in the module, not in the stub"
    assert {n for n in stubbed if not n.startswith("__")} - public == set(), "in the stub, not in the module"


def test_signatures_match():
    funcs, classes = stub_tree()
    for name, fn in funcs.items():
        assert arg_names(fn) == doc_arg_names(getattr(_core, name)), name
    for cname, members in classes.items():
        cls = getattr(_core, cname)
        real = {n for n in vars(cls) if not n.startswith("__") or n == "__init__"}
        real.discard("__init__") if "__init__" not in members else None
        assert set(members) - {"__init__"} == {n for n in real if n != "__init__"}, cname
        for mname, m in members.items():
            obj = getattr(cls, mname)
            if isinstance(m, ast.FunctionDef) and not any(
                    isinstance(d, ast.Name) and d.id == "property" for d in m.decorator_list):
                assert arg_names(m) == doc_arg_names(obj), f"{cname}.{mname}"


def test_every_function_has_a_docstring_with_units_where_it_takes_them():
    for name in exospec.__all__:
        obj = getattr(exospec, name)
        if inspect.isroutine(obj) or inspect.isclass(obj):
            assert obj.__doc__ and len(obj.__doc__) > 40, name
    for name, unit in (("calibrate", "R/nm"), ("fit", "R"), ("profile", "km"), ("line_model", "nm")):
        assert unit in getattr(exospec, name).__doc__, name
