"""Hundreds of generated malformed specs: each one loads or fails with a clean UserError that
names the file, never another exception (hypothesis)."""

import copy
import tomllib

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suite.errors import UserError
from suite.paths import reproductions_dir
from suite.spec import PROFILES, load_spec, parse_set

BASE_PATH = reproductions_dir() / "binaryconnect-mnist.toml"
BASE = tomllib.loads(BASE_PATH.read_text())

scalars = st.one_of(st.integers(-10**6, 10**12), st.floats(allow_nan=False, width=32), st.booleans(),
                    st.text(max_size=12), st.sampled_from(["sgd", "adam", "mnist", "binaryconnect(bits=0)",
                                                           "binaryconnect(stochastic=2)", "none", "glorot", ""]))
values = st.one_of(scalars, st.lists(scalars, max_size=4), st.dictionaries(st.text(min_size=1, max_size=6), scalars,
                                                                           max_size=3))


def _paths(node, prefix=()):
    for key, value in node.items():
        yield prefix + (key,)
        if isinstance(value, dict):
            yield from _paths(value, prefix + (key,))


def _mutate(spec: dict, data) -> dict:
    spec = copy.deepcopy(spec)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(spec))
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = spec
        for key in path[:-1]:
            parent = parent[key]
        op = data.draw(st.sampled_from(["delete", "replace", "add", "rename"]))
        if op == "delete":
            del parent[path[-1]]
        elif op == "replace":
            parent[path[-1]] = data.draw(values)
        elif op == "add":
            parent[data.draw(st.text(min_size=1, max_size=8))] = data.draw(values)
        else:
            parent[path[-1] + data.draw(st.sampled_from(["s", "_", "x"]))] = parent.pop(path[-1])
    return spec


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_specs_fail_cleanly(tmp_path, data):
    path = tmp_path / "fuzzed.toml"
    path.write_text(tomli_w.dumps(_mutate(BASE, data)))
    try:
        load_spec(path, data.draw(st.sampled_from(PROFILES)))
    except UserError as e:
        assert str(path) in str(e) and "\n" not in str(e)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_garbage_files_fail_cleanly(tmp_path, blob):
    path = tmp_path / "garbage.toml"
    path.write_bytes(blob if isinstance(blob, bytes) else blob.encode())
    try:
        load_spec(path, "smoke")
    except UserError as e:
        assert str(path) in str(e)


@settings(max_examples=150, deadline=None)
@given(key=st.text(min_size=1, max_size=20), value=st.text(max_size=20))
def test_set_overrides_fail_cleanly(key, value):
    try:
        load_spec(BASE_PATH, "smoke", parse_set([f"{key}={value}"]))
    except UserError:
        pass
