"""README.md: its first lines, its API tour (run as a doctest), its folder diagram."""
import doctest
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def readme_text():
    return README.read_text(encoding="utf-8")


def folder_diagram():
    """The first Mermaid block of the "## 目录结构" section."""
    section = readme_text().split("## 目录结构", 1)[1]
    return re.search(r"```mermaid\n(.*?)```", section, flags=re.S).group(1)


def architecture_folders(parent):
    """Folders holding files git tracks: output folders (lesson_output/, gpt_demo/,
    build/, caches) are git-ignored and not part of the architecture."""
    return [p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")
            and p.relative_to(ROOT).as_posix() in _tracked_folders()]


def _tracked_folders():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    return {Path(f).parents[i].as_posix() for f in files for i in range(len(Path(f).parts) - 1)}


def test_readme_starts_with_make_demo_and_make_test():
    title, *rest = [line for line in readme_text().splitlines() if line.strip()]
    assert title.startswith("# ")
    assert rest[0] == "```bash"
    assert rest[1].startswith("make demo ") and rest[2].startswith("make test ")
    assert rest[3] == "```"


def test_api_tour_runs_and_prints_what_it_shows():
    result = doctest.testfile(str(README), module_relative=False, encoding="utf-8")
    assert result.attempted > 10 and result.failed == 0


def test_folder_diagram_names_every_module_and_folder():
    diagram = folder_diagram()
    package = ROOT / "tinygrad_zh"
    modules = [p.name for p in package.glob("*.py")]
    modules += [p.name for sub in architecture_folders(package) for p in sub.glob("*.py")
                if p.name != "__init__.py"]
    folders = architecture_folders(ROOT) + architecture_folders(package)
    missing = [m for m in modules if m not in diagram]
    missing += [f"{f.name}/" for f in folders if f"{f.name}/" not in diagram]
    assert not missing, f"README folder diagram does not show {missing}; add them"


def test_folder_diagram_names_only_files_that_exist():
    existing = {p.name for p in ROOT.rglob("*.py") if ".venv" not in p.parts}
    named = set(re.findall(r"[\w.]+\.py\b", folder_diagram()))
    assert named and named <= existing, f"README names files that do not exist: {named - existing}"
