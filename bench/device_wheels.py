"""The wheels a GPU device session carries, and the dry run's stand-in for the device image.

    python -m bench.device_wheels [--dest .whl]                       # make device-wheels
    python -m bench.device_wheels image-site DIR --from SITE_PACKAGES  # used by make device-dry-run

The device machine (``nvidia-h200``: Python 3.12, torch 2.11 + torchvision 0.26, no package registry) has the
packages of :data:`IMAGE_PACKAGES` (the list of /work/.library/device/KINDS.md, "Python packages already
there"). What ``import video_assets.operators`` and the benchmarks need beyond them is :data:`CARRIED`,
downloaded here for CPython 3.12 on manylinux x86_64 into ``.whl/`` (git-ignored) and installed there with
``pip install --no-index --no-deps --target`` (``bench/gpu_session.sh``). torch and torchvision are never
carried: the image's build matches its driver. The project itself travels as source (the working tree) and is
found through ``PYTHONPATH``; ``pip install .`` would pull torch 2.14.1 (pyproject.toml's pin).

PyNvVideoCodec (NVDEC, for ``bench/nvdec_probe.py`` only; issue 18) is carried slimmed (:data:`SLIMMED`): its
27 MB wheel holds the FFmpeg sources it was built from (``.data/``), samples, benchmarks and three identical
copies of each FFmpeg library (no symbolic links in a wheel). :func:`slim_wheel` downloads the full wheel into
``build/wheel-cache/`` and writes a copy to ``.whl/`` that keeps every Python file, every extension module and
only the bundled libraries their ELF ``NEEDED`` entries reach through their ``RPATH``/``RUNPATH`` (read by
:func:`elf_dynamic`), failing when a ``NEEDED`` library is neither bundled nor one of :data:`HOST_LIBS`.

``image-site`` builds the dry run's site folder: symbolic links to the distributions of a local
site-packages that are in :data:`IMAGE_PACKAGES`, plus what they require (the image is a consistent set of its
own), and never one of :data:`CARRIED`: those come from ``.whl/`` as on the device, so an import the device
lacks fails in the dry run.

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import posixpath
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "wheel-cache"  # full wheels of SLIMMED (git-ignored, never carried)

# The versions tested here (and, av and open_clip, in the 2026-12-01 H200 run); one version each, since two
# copies of a package in the folder stop the whole install.
CARRIED = {"av": "18.1.0", "open-clip-torch": "3.3.0", "ftfy": "6.3.1", "wcwidth": "0.9.4",
           "pynvvideocodec": "2.2.4"}
SLIMMED = {"pynvvideocodec"}  # carried as slim_wheel's copy (bench/nvdec_probe.py; not a product dependency)
SLIM_DROP_TOPS = ("samples", "benchmarks")  # top-level folders of the wheel that nothing imports
# Libraries a bundled ELF file may need without the wheel carrying them: glibc and the C++ runtime (the
# manylinux policy), zlib (in every image with a Python), and the driver's libcuda (NVDEC's own libnvcuvid and
# libnvidia-encode are opened at run time, never NEEDED).
HOST_LIBS = frozenset({"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1",
                       "ld-linux-x86-64.so.2", "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1", "libcuda.so.1"})
NEVER_CARRIED = {"torch", "torchvision"}
MAX_MIB = 55  # the device tool carries 64 MiB in all, the working tree included
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
PYTHON_VERSION = "3.12"

IMAGE_PACKAGES = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec
patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu
safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio
torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(metadata: str) -> list[str]:
    """Names a distribution requires unconditionally (no ``extra ==`` marker)."""
    out = []
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:") and "extra ==" not in line:
            out.append(normalize(re.match(r"[A-Za-z0-9._-]+", line.split(":", 1)[1].strip()).group(0)))
    return out


def _wheel_name(path: Path) -> str:
    return normalize(path.name.split("-", 1)[0])


def _pip_download(dest: Path, pins: dict[str, str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
           "--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp",
           *(a for p in PLATFORMS for a in ("--platform", p)), "-d", str(dest),
           *(f"{n}=={v}" for n, v in sorted(pins.items()))]
    subprocess.run(cmd, check=True)


def download(dest: Path, cache: Path = CACHE) -> list[Path]:
    """Download :data:`CARRIED` into ``dest`` (:data:`SLIMMED` ones via ``cache``, slimmed), drop anything else
    there, check the set; returns the wheels."""
    assert not NEVER_CARRIED & set(CARRIED) and not IMAGE_PACKAGES & set(CARRIED) and SLIMMED <= set(CARRIED)
    _pip_download(dest, {n: v for n, v in CARRIED.items() if n not in SLIMMED})
    slim = {n: v for n, v in CARRIED.items() if n in SLIMMED}
    _pip_download(cache, slim)
    for full in sorted(cache.glob("*.whl")):
        if slim.get(_wheel_name(full)) == full.name.split("-")[1]:
            report = slim_wheel(full, dest)
            print(f"slimmed {full.name}: {full.stat().st_size / 2**20:.1f} -> {report['size'] / 2**20:.1f} MiB, "
                  f"dropped {len(report['dropped'])} files ({', '.join(report['dropped_libs']) or 'no library'})",
                  file=sys.stderr)
    wheels = []
    for p in sorted(dest.iterdir()):
        name = _wheel_name(p)
        version = p.name.split("-")[1] if p.suffix == ".whl" else None
        if CARRIED.get(name) != version:  # an older pin or a stray file: the install takes every wheel there
            print(f"removing {p.name}", file=sys.stderr)
            p.unlink()
        else:
            wheels.append(p)
    missing = set(CARRIED) - {_wheel_name(p) for p in wheels}
    if missing:
        raise SystemExit(f"no wheel for {sorted(missing)}")
    for p in wheels:
        with zipfile.ZipFile(p) as z:
            meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        lacking = [r for r in requirements(meta) if r not in IMAGE_PACKAGES and r not in CARRIED]
        if lacking:
            raise SystemExit(f"{p.name} needs {lacking}, neither in the device image nor carried")
    return wheels


_DT = {1: "NEEDED", 14: "SONAME", 15: "RPATH", 29: "RUNPATH"}


def elf_dynamic(data: bytes) -> dict[str, list[str]] | None:
    """The ``NEEDED``, ``SONAME``, ``RPATH`` and ``RUNPATH`` entries of a little-endian ELF64 file's dynamic
    section (what ``readelf -d`` lists), each a list; None for a file that is not one, {} without a dynamic
    section."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    out: dict[str, list[str]] = {}
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, _entsize in sections:
        if kind != 6:  # SHT_DYNAMIC; sh_link is its string table
            continue
        strtab = sections[link][4]
        for at in range(offset, offset + size, 16):
            tag, val = struct.unpack_from("<qQ", data, at)
            if tag == 0:
                break
            if tag in _DT:
                end = data.index(b"\0", strtab + val)
                text = data[strtab + val:end].decode()
                out.setdefault(_DT[tag], []).extend(text.split(":") if tag in (15, 29) else [text])
    return out


def slim_wheel(src: Path, dest_dir: Path) -> dict:
    """Write to ``dest_dir`` a copy of the wheel ``src`` (same name) without its ``.data/`` folder, the
    :data:`SLIM_DROP_TOPS` folders and the bundled shared libraries that no extension module reaches through
    ``NEEDED`` and ``RPATH``/``RUNPATH`` (``$ORIGIN`` relative). Raises SystemExit when a kept ELF file needs a
    library that is neither bundled where its search path looks nor in :data:`HOST_LIBS`. RECORD keeps the
    kept files' lines (their bytes are unchanged). Returns what was kept and dropped, and the new size."""
    dest = dest_dir / src.name
    with zipfile.ZipFile(src) as z:
        infos = [i for i in z.infolist() if not i.is_dir()]
        names = {i.filename for i in infos}
        data_dir = "-".join(src.name.split("-")[:2]) + ".data/"
        dropped = {n for n in names if n.startswith(data_dir) or n.split("/", 1)[0] in SLIM_DROP_TOPS}
        elf = {}
        for n in sorted(names - dropped):
            if ".so" in posixpath.basename(n):
                dyn = elf_dynamic(z.read(n))
                if dyn is not None:
                    elf[n] = dyn
        modules = [n for n in elf if re.search(r"\.cpython-[^/]*\.so$|\.abi3\.so$", n)]
        reached, todo, needs = set(modules), list(modules), {}
        while todo:
            n = todo.pop()
            here = posixpath.dirname(n)
            dirs = [posixpath.normpath(d.replace("$ORIGIN", here).replace("${ORIGIN}", here))
                    for d in elf[n].get("RPATH", []) + elf[n].get("RUNPATH", [])]
            for lib in elf[n].get("NEEDED", []):
                found = next((f for f in (posixpath.join(d, lib) for d in dirs) if f in elf), None)
                if found is None and lib not in HOST_LIBS:
                    raise SystemExit(f"{src.name}: {n} needs {lib}, neither bundled on its search path "
                                     f"{dirs} nor a host library")
                needs.setdefault(n, []).append(found or lib)
                if found and found not in reached:
                    reached.add(found)
                    todo.append(found)
        dropped_libs = sorted(set(elf) - reached)
        dropped |= set(dropped_libs)
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        lines = [x for x in z.read(record).decode().splitlines() if x and x.split(",", 1)[0] not in dropped]
        tmp = dest.with_name(dest.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
            for info in infos:
                if info.filename in dropped:
                    continue
                body = "\n".join(lines).encode() + b"\n" if info.filename == record else z.read(info)
                copy = zipfile.ZipInfo(info.filename, info.date_time)
                copy.external_attr, copy.compress_type = info.external_attr, zipfile.ZIP_DEFLATED
                out.writestr(copy, body)
    tmp.replace(dest)
    return {"wheel": dest, "size": dest.stat().st_size, "kept_elf": {n: needs.get(n, []) for n in sorted(reached)},
            "dropped": sorted(dropped), "dropped_libs": [posixpath.basename(n) for n in dropped_libs]}


def image_site(target: Path, site_packages: Path) -> list[str]:
    """Link into ``target`` the distributions of ``site_packages`` that stand for the device image."""
    dists = {}
    for info in site_packages.glob("*.dist-info"):
        meta = (info / "METADATA").read_text(errors="replace")
        name = normalize(re.search(r"^Name:\s*(\S+)", meta, re.M).group(1))
        dists[name] = (info, requirements(meta))
    todo = [n for n in IMAGE_PACKAGES if n in dists]
    chosen: set[str] = set()
    while todo:
        n = todo.pop()
        if n in chosen or n in CARRIED or n not in dists:
            continue
        chosen.add(n)
        todo.extend(dists[n][1])
    target.mkdir(parents=True, exist_ok=True)
    for n in sorted(chosen):
        info = dists[n][0]
        tops = {info.name}
        record = info / "RECORD"
        if record.exists():
            for line in record.read_text().splitlines():
                first = line.split(",", 1)[0].split("/", 1)[0]
                if first and first not in ("..", "__pycache__") and not first.endswith(".pth"):
                    tops.add(first)
        for top in tops:
            src, link = site_packages / top, target / top
            if src.exists() and not link.exists():
                link.symlink_to(src)
    return sorted(chosen)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    site = sub.add_parser("image-site", help="build the dry run's stand-in for the device image's packages")
    site.add_argument("target", type=Path)
    site.add_argument("--from", dest="site_packages", type=Path, required=True)
    ap.add_argument("--dest", type=Path, default=ROOT / ".whl")
    args = ap.parse_args(argv)
    if args.cmd == "image-site":
        chosen = image_site(args.target, args.site_packages)
        print(f"{len(chosen)} distributions linked into {args.target}")
        return 0
    wheels = download(args.dest)
    total = sum(p.stat().st_size for p in wheels)
    for p in wheels:
        print(f"{p.stat().st_size / 2**20:8.2f} MiB  {p.name}")
    print(f"{total / 2**20:8.2f} MiB  total in {args.dest} (limit {MAX_MIB} MiB)")
    if total > MAX_MIB * 2**20:
        raise SystemExit(f"the wheels take {total / 2**20:.1f} MiB, over {MAX_MIB} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
