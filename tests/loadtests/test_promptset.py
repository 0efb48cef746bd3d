"""The shipped prompt set: current, and spanning a few words to several thousand tokens."""

from pathlib import Path

import pytest
from llmload import promptset


def test_the_shipped_file_is_what_the_generator_writes() -> None:
    shipped = promptset.PROMPTS_FILE.read_text(encoding="utf-8")
    assert shipped == promptset.dumps(promptset.generate()), (
        "loadtests/prompts.jsonl is stale: run python loadtests/llmload/promptset.py"
    )


def test_lengths_run_from_a_few_words_to_several_thousand() -> None:
    prompts = promptset.load()
    words = sorted(p.words for p in prompts)
    assert words[0] <= 5 and words[-1] >= 4000
    assert {p.size for p in prompts} == set(promptset.SIZES)
    assert len({p.prompt for p in prompts}) == len(prompts)
    # Long prompts differ from their first words on, so a prefix cache cannot make them cheap.
    long = [p.prompt for p in prompts if p.size != "short"]
    assert len({text[:40] for text in long}) == len(long)


def test_sizes_filter_and_bad_files_name_the_line(tmp_path: Path) -> None:
    assert {p.size for p in promptset.load(sizes=("short",))} == {"short"}
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"no prompt": 1}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2"):
        promptset.load(bad)
    bad.write_text('{"prompt": "x", "size": "long"}\n')
    with pytest.raises(ValueError, match="no prompt of size short"):
        promptset.load(bad, ("short",))
