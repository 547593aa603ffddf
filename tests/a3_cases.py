# ruff: noqa: E501  (mutants quote whole lines of the solution)
"""A3's mutants (known-wrong answers) and the submissions of its shared autograde batch."""

from __future__ import annotations

from tests.grading_support import Assignment, Mutant, Submission, edited

_PLAIN_DESIGN = """    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128, 10))
"""

MUTANTS: dict[str, Mutant] = {
    "conv_out_padding_once": Mutant("output size adds the padding once instead of on each side", [
        ("size_functions", "room = size + 2 * padding - span", "room = size + padding - span")]),
    "conv_out_dilation_ignored": Mutant("output size ignores the dilation", [
        ("size_functions", "span = dilation * (kernel_size - 1) + 1", "span = kernel_size")]),
    "receptive_field_without_jump": Mutant("receptive field grows by K - 1 per layer, forgetting the strides below", [
        ("size_functions", "field += (kernel_size - 1) * jump", "field += kernel_size - 1")]),
    "alexnet_conv2_without_padding": Mutant("AlexNet conv2 walked without its padding of 2", [
        ("size_answers", "alexnet_conv2 = conv_out(alexnet_pool1, 5, 1, 2)", "alexnet_conv2 = conv_out(alexnet_pool1, 5)")]),
    "vgg_flat_as_float": Mutant("VGG's flattened size computed with / (a float)", [
        ("size_answers", "vgg_flat = 512 * (224 // 2 ** 5) ** 2", "vgg_flat = 512 * (224 / 2 ** 5) ** 2")]),
    "macs_count_the_bias": Mutant("MACs count one addition per output for the bias", [
        ("cost_functions", "return weights + (c_out if bias else 0), weights * out_size * out_size",
         "return weights + (c_out if bias else 0), (weights + (c_out if bias else 0)) * out_size * out_size")]),
    "groups_ignored": Mutant("conv cost ignores groups (a depthwise conv costed as a full one)", [
        ("cost_functions", "weights = c_out * (c_in // groups) * kernel_size * kernel_size",
         "weights = c_out * c_in * kernel_size * kernel_size")]),
    "inception_cost_without_reductions": Mutant("inception cost forgets the 1x1 reductions (3x3 and 5x5 on c_in)", [
        ("cost_functions", "convs = [(c_in, c1, 1), (c_in, c3r, 1), (c3r, c3, 3), (c_in, c5r, 1), (c5r, c5, 5), (c_in, pool_proj, 1)]",
         "convs = [(c_in, c1, 1), (c_in, c3, 3), (c_in, c5, 5), (c_in, pool_proj, 1)]")]),
    "bottleneck_cost_always_projection": Mutant("bottleneck cost counts a projection even when the shape is kept", [
        ("cost_functions", "if stride != 1 or c_in != c_out:\n        costs.append", "if True:\n        costs.append")]),
    "bottleneck_cost_without_bn": Mutant("bottleneck cost forgets the batch norms' parameters", [
        ("cost_functions", "bn = 2 * (width + width + c_out)", "bn = 0")]),
    "inception_concat_wrong_axis": Mutant("inception branches concatenated along the batch axis", [
        ("inception", "self.branch_pool(x)], dim=1)", "self.branch_pool(x)], dim=0)")]),
    "inception_without_reduction": Mutant("inception's 3x3 branch has no 1x1 reduction", [
        ("inception", "self.branch3 = nn.Sequential(nn.Conv2d(c_in, c3r, 1), nn.ReLU(), nn.Conv2d(c3r, c3, 3, padding=1), nn.ReLU())",
         "self.branch3 = nn.Sequential(nn.Conv2d(c_in, c3, 3, padding=1), nn.ReLU())")]),
    "residual_without_projection": Mutant("basic block keeps the identity shortcut when the shape changes", [
        ("residual", "        if stride != 1 or c_in != c_out:\n            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))\n        ### END SOLUTION\n\n    def forward(self, x):\n        ### BEGIN SOLUTION\n        return torch.relu(self.residual(x) + self.shortcut(x))\n        ### END SOLUTION\n\n\nclass Bottleneck",
         "        ### END SOLUTION\n\n    def forward(self, x):\n        ### BEGIN SOLUTION\n        return torch.relu(self.residual(x) + self.shortcut(x))\n        ### END SOLUTION\n\n\nclass Bottleneck")]),
    "projection_without_bn_or_stride": Mutant("bottleneck projection: a stride-1 1x1 conv without batch norm", [
        ("residual", "            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))\n        ### END SOLUTION\n\n    def forward(self, x):\n        ### BEGIN SOLUTION\n        return torch.relu(self.residual(x) + self.shortcut(x))\n        ### END SOLUTION\n",
         "            self.shortcut = nn.Conv2d(c_in, c_out, 1, bias=False)\n        ### END SOLUTION\n\n    def forward(self, x):\n        ### BEGIN SOLUTION\n        return torch.relu(self.residual(x) + self.shortcut(x))\n        ### END SOLUTION\n")]),
    "bottleneck_stride_on_first_1x1": Mutant("bottleneck strides in its first 1x1 conv instead of the 3x3", [
        ("residual", "nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),\n            nn.Conv2d(width, width, 3, stride, 1, bias=False)",
         "nn.Conv2d(c_in, width, 1, stride, bias=False), nn.BatchNorm2d(width), nn.ReLU(),\n            nn.Conv2d(width, width, 3, 1, 1, bias=False)")]),
    "relu_before_the_addition": Mutant("basic block applies the last ReLU to the residual branch before adding the shortcut", [
        ("residual", "        return torch.relu(self.residual(x) + self.shortcut(x))\n        ### END SOLUTION\n\n\nclass Bottleneck",
         "        return torch.relu(self.residual(x)) + self.shortcut(x)\n        ### END SOLUTION\n\n\nclass Bottleneck")]),
    "growth_rate_applied_wrongly": Mutant("dense layer i sees c_in + growth_rate channels (growth not multiplied by i)", [
        ("dense", "nn.Sequential(nn.BatchNorm2d(c_in + i * growth_rate), nn.ReLU(),\n                          nn.Conv2d(c_in + i * growth_rate, growth_rate",
         "nn.Sequential(nn.BatchNorm2d(c_in + min(i, 1) * growth_rate), nn.ReLU(),\n                          nn.Conv2d(c_in + min(i, 1) * growth_rate, growth_rate")]),
    "dense_drops_the_input": Mutant("dense block returns only the new features, not the input", [
        ("dense", "return torch.cat(features, dim=1)", "return torch.cat(features[1:], dim=1)")]),
    "depthwise_without_groups": Mutant("depthwise conv without groups=c_in (a full conv)", [
        ("mobile", "self.depthwise = nn.Conv2d(c_in, c_in, kernel_size, stride, kernel_size // 2, groups=c_in, bias=False)",
         "self.depthwise = nn.Conv2d(c_in, c_in, kernel_size, stride, kernel_size // 2, bias=False)")]),
    "inverted_residual_relu_after_projection": Mutant("inverted residual with a ReLU6 after its projection", [
        ("mobile", "nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]",
         "nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU6()]")]),
    "inverted_residual_without_residual": Mutant("inverted residual never adds its input", [
        ("mobile", "self.use_residual = stride == 1 and c_in == c_out", "self.use_residual = False")]),
    "design_over_budget": Mutant("a plain two-layer CNN: over the parameter and MAC budget", [
        ("design", "    return nn.Sequential(\n        nn.Conv2d(1, 16, 3, padding=1, bias=False)",
         _PLAIN_DESIGN + "    return nn.Sequential(\n        nn.Conv2d(1, 16, 3, padding=1, bias=False)")]),
    "design_untrainable": Mutant("a design within budget that cannot learn (no nonlinearity, one linear map of a 1-channel pool)", [
        ("design", "    return nn.Sequential(\n        nn.Conv2d(1, 16, 3, padding=1, bias=False)",
         "    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 10))\n"
         "    return nn.Sequential(\n        nn.Conv2d(1, 16, 3, padding=1, bias=False)")]),
}

BLOCK_CELLS = {"test_inception", "test_inception_hidden", "test_residual", "test_residual_hidden",
               "test_design_budget", "test_design_accuracy"}

# The course's own blocks (and torchvision's) instead of building them: each scores 0 on its cells.
COURSE_BLOCKS = {
    "inception": '''
from cnncourse.models.googlenet import InceptionBlock


class Inception(InceptionBlock):
    pass
''',
    "residual": '''
import torchvision.models.resnet as tv
from cnncourse.models import resnet


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        down = None if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.block = tv.BasicBlock(c_in, c_out, stride, down)

    def forward(self, x):
        return self.block(x)


class Bottleneck(resnet.Bottleneck):
    def __init__(self, c_in, width, c_out, stride=1):
        down = None if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        super().__init__(c_in, c_out // 4, stride, down)
''',
    "design": '''
def build_model():
    from cnncourse.models.mobilenet import DepthwiseSeparableConv
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), DepthwiseSeparableConv(16, 32),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
''',
}


def _fair(correct):
    """Correct answers written in ways that must not cost a point: the tests' names rebound, stderr output."""
    nb = edited(correct, size_answers=lambda s: (
        "x, y, model, shapes, describe, run, count, conv = 1, 2, 3, 4, 5, 6, 7, 8  # names the tests also use\n"
        "import sys\nprint('debug: answers', file=sys.stderr)\n" + s))
    return edited(nb, mobile=lambda s: s + "\n\n\nblock = DepthwiseSeparable(4, 4)  # a student's experiment\n"
                                          "torch.manual_seed(123)\nprint(block(torch.randn(1, 4, 5, 5)).shape)\n")


def submissions(a3: Assignment) -> dict[str, Submission]:
    """The shared autograde batch (lean: the expensive design test runs once per submission)."""
    release, correct = a3.release_nb(), a3.correct()
    return {
        "alice": Submission(correct),
        "fiona_fair_names_stderr": Submission(_fair(correct)),
        "ursula_untouched": Submission(release, fails=set(a3.grade_cells)),
        "carl_course_blocks": Submission(edited(correct, **{k: v.strip("\n") for k, v in COURSE_BLOCKS.items()}),
                                         fails=BLOCK_CELLS),
        "oscar_edits_tests": Submission(
            edited(correct, dense=lambda s: s.replace("return torch.cat(features, dim=1)",
                                                      "return torch.cat(features[1:], dim=1)"),
                   test_dense='"""Edited by the student."""\nassert True',
                   test_dense_hidden='"""Edited by the student."""\nassert True'),
            fails={"test_dense", "test_dense_hidden"}, audit=True),
    }
