"""A1's tests bite: known student mistakes (mutants of the reference solution) must lose points.

Each mutant is a text replacement inside one answer cell of the source notebook; the notebook's code
cells (hidden tests included) then run in this process, scored like ``nbgrader autograde`` would score
them (``cnncourse.grading.grade_in_process``). The mutation score is printed and written to
``benchmarks/results/a1_mutation.json``.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import nbformat
import pytest

from cnncourse.autograde.inprocess import grade_in_process

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "solutions" / "a1-convolution" / "a1-convolution.ipynb"
RESULT = ROOT / "benchmarks" / "results" / "a1_mutation.json"

_EVERY_ELEMENT = """    grad_x = grad_x.view(N, C, H, W)
    for a in range(kh):
        for b in range(kw):
            grad_x[:, :, a:a + sh * (OH - 1) + 1:sh, b:b + sw * (OW - 1) + 1:sw] += grad_y
    return grad_x"""

# name -> (what the student got wrong, [(answer cell grade_id, old text, new text), ...])
MUTANTS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "true_convolution": ("kernel flipped (textbook convolution, not PyTorch's cross-correlation)", [
        ("conv2d_naive", "w = weight.reshape(F_out, -1)", "w = weight.flip(2, 3).reshape(F_out, -1)")]),
    "pad_one_side": ("all the padding on the bottom/right instead of P on each side", [
        ("conv2d_naive", "xp[:, :, ph:ph + H, pw:pw + W] = x", "xp[:, :, :H, :W] = x")]),
    "stride_ignored": ("windows step by 1 whatever the stride (output size still uses it)", [
        ("conv2d_naive", "r, c = i * sh, j * sw", "r, c = i, j")]),
    "output_size_off_by_one": ("output size without the + 1", [
        ("conv2d_naive", "(kh - 1) - 1) // sh + 1", "(kh - 1) - 1) // sh"),
        ("conv2d_naive", "(kw - 1) - 1) // sw + 1", "(kw - 1) - 1) // sw")]),
    "bias_wrong_axis": ("bias broadcast along the width instead of the filter axis", [
        ("conv2d_naive", "bias.view(1, -1, 1, 1)", "bias.view(1, 1, 1, -1)")]),
    "dilation_ignored": ("kernel taps adjacent whatever the dilation", [
        ("conv2d_naive", "field = xp[:, :, r:r + dh * (kh - 1) + 1:dh, c:c + dw * (kw - 1) + 1:dw]",
         "field = xp[:, :, r:r + kh, c:c + kw]")]),
    "im2col_offsets_column_major": ("im2col rows ordered (b, a) instead of unfold's (a, b)", [
        ("im2col_col2im", "return cols.reshape(N, C * kh * kw, OH * OW)",
         "return cols.transpose(2, 3).reshape(N, C * kh * kw, OH * OW)")]),
    "col2im_overwrites": ("col2im overwrites overlapping entries instead of adding them", [
        ("im2col_col2im", "+= cols[:, :, a, b]", "= cols[:, :, a, b]")]),
    "weight_reshape_transposed": ("weights reshaped to (C*kh*kw, F) and transposed", [
        ("conv2d_im2col", "y = weight.reshape(F_out, C * kh * kw) @ cols",
         "y = weight.reshape(C * kh * kw, F_out).T @ cols")]),
    "grad_weight_batch_mean": ("weight gradient averaged over the batch instead of summed", [
        ("conv2d_backward", ".sum(dim=0).reshape(weight.shape)", ".mean(dim=0).reshape(weight.shape)")]),
    "grad_bias_first_sample": ("bias gradient of the first sample only", [
        ("conv2d_backward", "grad_bias = grad_y.sum(dim=(0, 2, 3))", "grad_bias = grad_y[0].sum(dim=(1, 2))")]),
    "pool_stride_defaults_to_1": ("max-pool stride defaults to 1 instead of the window size", [
        ("max_pool2d", "pair(kernel_size if stride is None else stride)", "pair(1 if stride is None else stride)")]),
    "maxpool_grad_to_every_element": ("max-pool backward sends the gradient to every window element", [
        ("max_pool2d_backward", "    grad_x.scatter_add_(2, index, grad_y.reshape(N, C, -1))\n"
                                "    return grad_x.reshape(N, C, H, W)", _EVERY_ELEMENT)]),
    "maxpool_grad_row_col_swapped": ("max-pool backward decodes the argmax as (col, row)", [
        ("max_pool2d_backward", "* sh + k // kw", "* sh + k % kw"),
        ("max_pool2d_backward", "* sw + k % kw", "* sw + k // kw")]),
    "maxpool_grad_last_tie": ("max-pool backward picks the last of tied maxima", [
        ("max_pool2d_backward", "k = win.argmax(dim=-1)", "k = kh * kw - 1 - win.flip(-1).argmax(dim=-1)")]),
    "avgpool_grad_not_divided": ("average-pool backward does not divide by the window area", [
        ("avg_pool2d", "+= grad_y / (kh * kw)", "+= grad_y")]),
    "params_without_bias": ("parameter count forgets the biases", [
        ("q1_answers", "q1e_params = 11 * 11 * 3 * 96 + 96", "q1e_params = 11 * 11 * 3 * 96")]),
}


@pytest.fixture(scope="module")
def source():
    return nbformat.read(SOURCE, as_version=4)


def visible_only(nb):
    """The notebook with its hidden tests removed: what students can run before submitting."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.source = re.sub(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n?", "", cell.source, flags=re.S)
    return nb


def test_solution_scores_full_in_process(source):
    """The in-process grader gives the reference solution every autograded point (as autograde does)."""
    report = grade_in_process(source, cwd=SOURCE.parent)
    assert report.max_score == 31
    assert report.score == report.max_score, [(c.grade_id, c.error) for c in report.cells if c.error]


def test_every_mutant_loses_points(source, capsys):
    """Every known-wrong implementation loses points; the mutation score is printed and written to JSON."""
    rows = []
    student_view = visible_only(source)
    for name, (what, replacements) in MUTANTS.items():
        report = grade_in_process(source, replacements, cwd=SOURCE.parent)
        visible = grade_in_process(student_view, replacements, cwd=SOURCE.parent)
        rows.append({"mutant": name, "mistake": what, "score": report.score, "max_score": report.max_score,
                     "failed_cells": report.failed, "caught_by_visible_tests": bool(visible.failed)})
    killed = [r for r in rows if r["score"] < r["max_score"]]
    result = {
        "assignment": "a1-convolution",
        "mutants": len(rows),
        "killed": len(killed),
        "mutation_score": len(killed) / len(rows),
        "caught_only_by_hidden_tests": [r["mutant"] for r in rows if r in killed and not r["caught_by_visible_tests"]],
        "results": rows,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    with capsys.disabled():
        print(f"\nA1 mutation score: {len(killed)}/{len(rows)} = {result['mutation_score']:.0%} "
              f"({len(result['caught_only_by_hidden_tests'])} caught only by hidden tests)")
    assert len(rows) >= 10
    survivors = [r["mutant"] for r in rows if r not in killed]
    assert not survivors, f"mutants that lost no points: {survivors}"


def test_mutant_targets_exist(source):
    """A mutant whose target text vanished from the solution is an error, not a silent survivor."""
    with pytest.raises(ValueError, match="exactly once"):
        grade_in_process(source, [("conv2d_naive", "text that is not in the cell", "x")], cwd=SOURCE.parent)
