"""The dry run's stand-in for the device image (bench/device_wheels.py): what it links, and what it leaves to the
carried wheels."""

from __future__ import annotations

from pathlib import Path

from bench.device_wheels import CARRIED, image_site, requirements


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
