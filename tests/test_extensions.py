"""The C++ extensions' build cache (suite/extensions.py): a build is found again by what it was
built from, not by where the checkout or its virtualenv lie, and anything else builds anew."""

import json

from suite import extensions


def _sources(folder, header="#define N 1\n"):
    folder.mkdir()
    (folder / "a.cpp").write_text('#include "a.h"\nint f() { return N; }\n')
    (folder / "a.h").write_text(header)
    return [folder / "a.cpp"]


def test_the_key_ignores_paths_and_follows_sources_headers_and_flags(tmp_path):
    one, two = _sources(tmp_path / "one"), _sources(tmp_path / "two")
    assert extensions.build_key(one, ["-O3"]) == extensions.build_key(two, ["-O3"])
    assert extensions.build_key(one, ["-O3"]) != extensions.build_key(one, ["-O2"])
    changed = _sources(tmp_path / "three", header="#define N 2\n")
    assert extensions.build_key(changed, ["-O3"]) != extensions.build_key(one, ["-O3"])


def test_a_build_is_reused_only_when_its_key_matches_and_its_library_is_there(tmp_path):
    stamp = tmp_path / "suite-build.json"
    assert extensions._built(stamp, "k") is None  # never built
    stamp.write_text(json.dumps({"key": "k", "module": "m"}))
    assert extensions._built(stamp, "k") is None  # the library is gone
    (tmp_path / "m.so").write_bytes(b"")
    assert extensions._built(stamp, "k") == "m"
    assert extensions._built(stamp, "other") is None  # sources, flags or torch changed
    for text in ("{", "[]", json.dumps({"key": "k", "module": 3})):
        stamp.write_text(text)
        assert extensions._built(stamp, "k") is None


def test_staged_copies_keep_their_time_while_unchanged(tmp_path):
    sources = _sources(tmp_path / "src")
    staged = extensions.stage(sources, tmp_path / "build")
    assert [p.name for p in staged] == ["a.cpp"] and (tmp_path / "build" / "a.h").exists()
    before = (tmp_path / "build" / "a.cpp").stat().st_mtime_ns
    extensions.stage(sources, tmp_path / "build")
    assert (tmp_path / "build" / "a.cpp").stat().st_mtime_ns == before
    (tmp_path / "src" / "a.h").write_text("#define N 3\n")
    extensions.stage(sources, tmp_path / "build")
    assert (tmp_path / "build" / "a.h").read_text() == "#define N 3\n"
