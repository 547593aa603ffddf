"""The assignments under test, one row each.

Adding an assignment: one :class:`Assignment` row here (its grade cells and points, its mutants, and the
submissions of its shared autograde batch; for an assignment graded from files or hidden data, the ``env`` and
``files`` grading needs), with a ``tests/<id>_cases.py`` holding them.
``tests/test_assignments.py`` runs every check over this table; ``benchmarks/mutation.py``
(``make mutation``) writes the mutation reports.
"""

from __future__ import annotations

from tests import a1_cases, a2_cases, a3_cases, a4_cases
from tests.grading_support import Assignment

ASSIGNMENTS = [
    Assignment(
        id="a1-convolution",
        points=31,
        grade_cells={
            "test_q1_sizes": 2, "test_q1_params": 2,
            "test_conv2d_naive": 2, "test_conv2d_naive_hidden": 3,
            "test_im2col": 1, "test_im2col_hidden": 2, "test_col2im": 1, "test_col2im_hidden": 2,
            "test_conv2d_im2col": 1, "test_conv2d_im2col_hidden": 2,
            "test_conv2d_backward": 2, "test_conv2d_backward_hidden": 3,
            "test_max_pool2d": 1, "test_max_pool2d_hidden": 1,
            "test_max_pool2d_backward": 1, "test_max_pool2d_backward_hidden": 2,
            "test_avg_pool2d": 1, "test_avg_pool2d_hidden": 2,
        },
        mutants=a1_cases.MUTANTS,
        submissions=a1_cases.submissions,
    ),
    Assignment(
        id="a2-init-batchnorm",
        points=27,
        grade_cells={
            "test_q1_variance": 1, "test_q1_relu": 1,
            "test_fans": 1, "test_fans_hidden": 1, "test_xavier": 1, "test_xavier_hidden": 2,
            "test_he": 1, "test_he_hidden": 1, "test_init_weights": 1, "test_init_weights_hidden": 1,
            "test_batchnorm_train": 2, "test_batchnorm_train_hidden": 2,
            "test_batchnorm_eval": 1, "test_batchnorm_eval_hidden": 1,
            "test_batchnorm_backward": 2, "test_batchnorm_backward_hidden": 3,
            "test_dropout": 1, "test_dropout_hidden": 2, "test_dropout_backward": 1, "test_dropout_backward_hidden": 1,
        },
        mutants=a2_cases.MUTANTS,
        submissions=a2_cases.submissions,
    ),
    Assignment(
        id="a3-architectures",
        points=31,
        grade_cells={
            "test_conv_out": 1, "test_conv_out_hidden": 2, "test_size_numbers": 3,
            "test_cost_functions": 1, "test_cost_functions_hidden": 3, "test_cost_numbers": 3,
            "test_inception": 1, "test_inception_hidden": 2, "test_residual": 1, "test_residual_hidden": 3,
            "test_dense": 1, "test_dense_hidden": 2, "test_mobile": 1, "test_mobile_hidden": 3,
            "test_design_budget": 1, "test_design_accuracy": 3,
        },
        mutants=a3_cases.MUTANTS,
        submissions=a3_cases.submissions,
    ),
    Assignment(
        id="a4-malaria",
        points=18,
        grade_cells={
            "test_normalisation": 2, "test_budget": 2, "test_model_output": 2, "test_grading_path": 2,
            "test_accuracy_90": 2, "test_accuracy_93": 2, "test_accuracy_95": 2, "test_accuracy_96": 2, "test_auc": 2,
        },
        mutants=a4_cases.MUTANTS,
        submissions=a4_cases.submissions,
        env=a4_cases.env,  # the hidden patients (synthetic here)
        files=a4_cases.files,  # a model.pt beside the reference notebook
    ),
]
BY_ID = {a.id: a for a in ASSIGNMENTS}
