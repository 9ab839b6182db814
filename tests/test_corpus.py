"""Every real job script in ../shared/corpus/alf parses (or fails exactly where it is broken)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tractorcli.jobs.alfred import parse_file
from tractorcli.jobs.model import JobError, resolve

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "alf"
FILES = sorted(CORPUS.glob("*.alf")) if CORPUS.is_dir() else []

# Files that are not valid job scripts, and the exact error each must give.
BROKEN = {
    # `Job -title` ends its line: Tcl's newline ends the command before the value
    "utsdab__usr__MAYA_MR_v001.alf": "utsdab__usr__MAYA_MR_v001.alf:2:5: Job: option -title needs a value on the same line",
}


@pytest.mark.skipif(not FILES, reason="the corpus folder is not present")
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_corpus_file(path):
    if path.name in BROKEN:
        with pytest.raises(JobError) as e:
            parse_file(str(path))
        assert str(e.value).endswith(BROKEN[path.name])
        assert "newline ends a Tcl command" in e.value.hint
        return
    job = parse_file(str(path))
    r = resolve(job)
    assert r.tasks and r.commands
    assert all(c.argv for _, _, c in r.commands)


@pytest.mark.skipif(not FILES, reason="the corpus folder is not present")
def test_corpus_details():
    legacy = parse_file(str(CORPUS / "utsdab__usr__MAYA_MR_v001_legacy.alf"))
    assert dict(legacy.assignments)["scenefile"] == "dottyMR_test.0001.ma"
    frames = [t for t in legacy.subtasks if t.title.startswith("mayabatch mr ")]
    assert [t.title for t in frames[:3]] == ["mayabatch mr 1", "mayabatch mr 3", "mayabatch mr 5"]
    argv = frames[1].cmds[0].argv
    assert argv[argv.index("-s") + 1] == "3" and argv[argv.index("-e") + 1] == "4"  # [expr $frame+1]
    assert legacy.subtasks[0].cmds[0].argv[-1].endswith("/maya/images/dottyMR_test.0001")

    nuke = parse_file(str(CORPUS / "LRongeart__.nuke__example_denoiseJob_956483.alf"))
    first = nuke.subtasks[0].subtasks[0].subtasks[0]
    assert first.title == "Denoise Frame 1001-1001 | MAINCHARA" and first.id == "id0001"
    assert first.cmds[0].refersto == "id0001"
    assert first.cmds[0].argv[:3] == ("denoise_batch", "-f", "-v")
    assert first.cmds[0].argv[-2:][1] == "1001-1001"
    assert nuke.projects == ("EXIT",) and nuke.paused is False and nuke.priority == 1.0
    assert any("-project is not a Tractor option" in w for w in nuke.warnings)

    htot = parse_file(str(CORPUS / "valentinfx__HTOT__htot_testScene_mantra1_1-24.alf"))
    assert htot.serialsubtasks and htot.subtasks[0].title == "Render" and not htot.subtasks[0].cmds
    assert htot.cleanup[0].argv[:3] == ("TractorBuiltIn", "File", "delete")
    ifd = htot.subtasks[1].cmds[0]
    assert ifd.argv[:3] == ("hbatch.exe", "-c", "render -V -f 1 24 /out/mantra1; quit")

    dotty = parse_file(str(CORPUS / "utsdab__usr__MAYA_RMS_dotty.alf"))
    assert dotty.dirmaps and all(d.zone for d in dotty.dirmaps)
    assert dotty.comment.startswith("#RenderMan for Maya")


@pytest.mark.skipif(not FILES, reason="the corpus folder is not present")
def test_strict_refuses_what_lenient_mode_warns_about():
    with pytest.raises(JobError, match=r"-project is not a Tractor option.*refused by --strict"):
        parse_file(str(CORPUS / "LRongeart__.nuke__example_denoiseJob_956483.alf"), strict=True)
    parse_file(str(CORPUS / "valentinfx__HTOT__htot_testScene_mantra1_1-24.alf"), strict=True)
