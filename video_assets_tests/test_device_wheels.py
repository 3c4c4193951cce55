"""The device session's wheels (bench/device_wheels.py): the dry run's stand-in for the device image (what it links,
and what it leaves to the carried wheels), and the slimmed PyNvVideoCodec wheel (its ELF reading, what it keeps)."""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bench import device_wheels
from bench.device_wheels import CACHE, CARRIED, HOST_LIBS, elf_dynamic, image_site, requirements, slim_wheel


def _dist(site: Path, name: str, tops: list[str], requires: list[str] = ()) -> None:
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
                                   + "".join(f"Requires-Dist: {r}\n" for r in requires))
    record = [f"{info.name}/METADATA,,"]
    for top in tops:
        if top.endswith(".py"):
            (site / top).write_text("")
        else:
            (site / top).mkdir()
            (site / top / "__init__.py").write_text("")
        record.append(f"{top}/__init__.py,," if not top.endswith(".py") else f"{top},,")
    record.append("../../bin/tool,,")
    (info / "RECORD").write_text("\n".join(record) + "\n")


def test_requirements_are_the_unconditional_ones():
    meta = ("Name: x\nRequires-Dist: torch>=2.0\nRequires-Dist: Typing_Extensions ; python_version < '3.11'\n"
            "Requires-Dist: pytest ; extra == 'test'\nRequires-Dist: huggingface-hub[cli]>=0.2\n")
    assert requirements(meta) == ["torch", "typing-extensions", "huggingface-hub"]


def test_image_site_links_the_image_and_its_needs_never_a_carried_or_foreign_package(tmp_path):
    site, target = tmp_path / "site-packages", tmp_path / "image"
    site.mkdir()
    _dist(site, "timm", ["timm"], ["PyYAML", "av"])  # in the image; requires a carried one
    _dist(site, "PyYAML", ["yaml", "_yaml"])  # not in the list itself, but the image's timm needs it
    _dist(site, "av", ["av"])  # carried: must come from .whl/ in the dry run too
    _dist(site, "dagster", ["dagster"])  # neither in the image nor needed by it
    _dist(site, "six", ["six.py"])
    chosen = image_site(target, site)
    assert chosen == ["pyyaml", "six", "timm"]
    linked = {p.name for p in target.iterdir()}
    assert {"timm", "yaml", "_yaml", "six.py", "timm-1.0.dist-info", "PyYAML-1.0.dist-info"} <= linked
    assert not {"av", "dagster"} & linked and not any(n.startswith(("av-", "dagster-")) for n in linked)
    assert "av" in CARRIED and (target / "timm").resolve() == (site / "timm").resolve()


def _readelf(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    text = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    for kind, value in re.findall(r"\((NEEDED|SONAME|RPATH|RUNPATH)\)\s+[^\[]*\[([^\]]*)\]", text):
        out.setdefault(kind, []).extend(value.split(":") if kind in ("RPATH", "RUNPATH") else [value])
    return out


@pytest.mark.skipif(shutil.which("readelf") is None, reason="no readelf to compare with")
def test_elf_dynamic_reads_what_readelf_reads():
    import av

    files = sorted(Path(av.__file__).parent.glob("*.so"))[:4] + sorted(
        (Path(av.__file__).parent.parent / "av.libs").glob("*.so*"))[:4]
    assert len(files) >= 4
    for f in files:
        dyn = elf_dynamic(f.read_bytes())
        assert dyn == _readelf(f), f
    assert any("RPATH" in elf_dynamic(f.read_bytes()) or "RUNPATH" in elf_dynamic(f.read_bytes()) for f in files)
    assert elf_dynamic(b"#!/bin/sh\n") is None and elf_dynamic(Path(av.__file__).read_bytes()) is None


def test_slim_wheel_drops_data_samples_and_benchmarks_and_keeps_the_record_true(tmp_path):
    src = tmp_path / "in" / "pkg-1.0-py3-none-any.whl"
    src.parent.mkdir()
    files = {"pkg/__init__.py": b"x = 1\n", "pkg/sub/mod.py": b"", "samples/demo.py": b"print()\n",
             "benchmarks/b.py": b"", "pkg-1.0.data/data/src.tar.xz": b"\0" * 1000,
             "pkg-1.0.dist-info/METADATA": b"Name: pkg\nVersion: 1.0\n"}
    with zipfile.ZipFile(src, "w") as z:
        for n, body in files.items():
            z.writestr(n, body)
        z.writestr("pkg-1.0.dist-info/RECORD", "".join(f"{n},sha256=x,{len(b)}\n" for n, b in files.items())
                   + "pkg-1.0.dist-info/RECORD,,\n")
    report = slim_wheel(src, tmp_path)
    with zipfile.ZipFile(tmp_path / src.name) as z:
        names = set(z.namelist())
        record = {line.split(",")[0] for line in z.read("pkg-1.0.dist-info/RECORD").decode().splitlines()}
        assert z.read("pkg/__init__.py") == b"x = 1\n"
    assert names == {"pkg/__init__.py", "pkg/sub/mod.py", "pkg-1.0.dist-info/METADATA", "pkg-1.0.dist-info/RECORD"}
    assert record == names and report["dropped_libs"] == [] and report["kept_elf"] == {}


def _full_nvdec_wheel() -> Path | None:
    wheels = sorted(CACHE.glob(f"pynvvideocodec-{CARRIED['pynvvideocodec']}-*.whl"))
    return wheels[0] if wheels else None


@pytest.mark.skipif(_full_nvdec_wheel() is None, reason="no downloaded PyNvVideoCodec wheel (make device-wheels)")
def test_the_slim_nvdec_wheel_keeps_every_library_its_modules_need(tmp_path, monkeypatch):
    full = _full_nvdec_wheel()
    report = slim_wheel(full, tmp_path)
    slim = report["wheel"]
    with zipfile.ZipFile(full) as z:
        before = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(slim) as z:
        after = {n: z.read(n) for n in z.namelist()}
        record = [line.split(",")[0] for line in z.read(next(n for n in after if n.endswith("RECORD"))).decode()
                  .splitlines()]
    assert sorted(record) == sorted(after) and all(after[n] == before[n] for n in after if not n.endswith("RECORD"))
    modules = [n for n in after if re.search(r"\.cpython-312-x86_64-linux-gnu\.so$", n)]
    assert {Path(n).name.split(".")[0] for n in modules} == {"PyNvVideoCodec_121", "PyNvVideoCodec_130",
                                                             "VersionCheck"}
    assert {"PyNvVideoCodec/__init__.py", "PyNvVideoCodec/decoders/SimpleDecoder.py",
            "PyNvVideoCodec/transcoder/Transcoder.py"} <= set(after)
    assert not [n for n in after if ".data/" in n or n.startswith(("samples/", "benchmarks/"))]
    # every NEEDED name of every ELF file left is bundled on that file's search path, or the host's
    elf = {n: elf_dynamic(b) for n, b in after.items() if elf_dynamic(b) is not None}
    for n, dyn in elf.items():
        dirs = [posixpath.normpath(d.replace("$ORIGIN", posixpath.dirname(n)))
                for d in dyn.get("RPATH", []) + dyn.get("RUNPATH", [])]
        for lib in dyn.get("NEEDED", []):
            assert lib in HOST_LIBS or any(posixpath.join(d, lib) in elf for d in dirs), (n, lib)
    assert any("libcudart" in n for n in elf) and "PyNvVideoCodec/libavformat.so.63" in elf
    # what went are copies of what stayed (a wheel has no symbolic links), not libraries of their own
    for n in set(before) - set(after):
        if ".so" in Path(n).name and elf_dynamic(before[n]) is not None:
            assert any(before[n] == after[k] for k in elf), n
    assert report["size"] < 8 * 2**20 < full.stat().st_size
    # and a library that is neither bundled nor the host's stops it loudly
    monkeypatch.setattr(device_wheels, "HOST_LIBS", HOST_LIBS - {"libz.so.1"})
    with pytest.raises(SystemExit, match="libz.so.1"):
        slim_wheel(full, tmp_path)


@pytest.mark.skipif(_full_nvdec_wheel() is None or shutil.which("cc") is None,
                    reason="no downloaded PyNvVideoCodec wheel (make device-wheels), or no C compiler")
def test_the_slim_nvdec_modules_load_with_only_the_driver_missing(tmp_path):
    """Both extension builds, unpacked from the slim wheel, load (lazy binding, no initialisation) with every
    bundled library they need, given only a stand-in for the driver's libcuda.so.1."""
    (tmp_path / "cuda.c").write_text("void cuInit(void) {}\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(tmp_path / "libcuda.so.1"),
                    str(tmp_path / "cuda.c")], check=True)
    with zipfile.ZipFile(slim_wheel(_full_nvdec_wheel(), tmp_path)["wheel"]) as z:
        z.extractall(tmp_path / "site")
    code = ("import ctypes, os, sys\n"
            "for m in sys.argv[1:]:\n"
            "    ctypes.CDLL(m, mode=os.RTLD_LAZY)\n"
            "print('\\n'.join(line.split()[-1] for line in open('/proc/self/maps')))\n")
    modules = sorted(str(p) for p in (tmp_path / "site" / "PyNvVideoCodec").glob("PyNvVideoCodec_*.so"))
    assert len(modules) == 2
    env = {**os.environ, "LD_LIBRARY_PATH": str(tmp_path)}
    loaded = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, env=env,
                            check=True).stdout.split()
    names = {Path(p).name for p in loaded if p.startswith(str(tmp_path))}  # what was found in the wheel
    assert {"libavformat.so.63", "libavutil.so.61", "libcuda.so.1"} <= names
    assert any(n.startswith("libcudart-") for n in names) and {Path(m).name for m in modules} <= names
    # and without the stand-in, it is the driver's library that is missing, nothing the wheel should carry
    env.pop("LD_LIBRARY_PATH")
    failed = subprocess.run([sys.executable, "-c", code, modules[0]], capture_output=True, text=True, env=env)
    assert failed.returncode != 0 and "libcuda.so.1" in failed.stderr
