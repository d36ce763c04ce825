"""Task registry: named (model, loss, data) bundles for optprobe experiments, built by `build_task`.

Conventions. `loss_fn(model, batch)` returns the scalar mean loss of a batch (a tuple of tensors whose first
dimension is the batch) and only calls `model(...)`, so it can be re-evaluated at other parameters with
`torch.func.functional_call`; it draws no random numbers (dropout in the model uses the global RNG).
`model_fn()` returns a fresh model; the caller seeds it with `torch.manual_seed`.

By concern: :mod:`.registry` (the :class:`Task` record, ``register``, ``build_task``), :mod:`.losses`,
:mod:`.solvers` (exact minimizers), and the builders: :mod:`.convex`, :mod:`.vision`, :mod:`.language`,
:mod:`.user_data`. Importing this package registers every built-in task, in that order.
"""

from optprobe.experiments.tasks.convex import (
    least_squares,
    logistic_breast_cancer,
    logistic_synthetic,
    quadratic,
)
from optprobe.experiments.tasks.language import (
    Transformer,
    bert_shakespeare,
    gpt_shakespeare,
    hf_bert,
    hf_gpt2,
    text_gpt,
)
from optprobe.experiments.tasks.losses import (
    cross_entropy_loss,
    logistic_loss,
    onehot_squared_loss,
    quadratic_loss,
    squared_loss,
)
from optprobe.experiments.tasks.registry import (
    TASKS,
    LossFn,
    Task,
    build_task,
    check_task_options,
    register,
    task_options,
)
from optprobe.experiments.tasks.solvers import logistic_reference
from optprobe.experiments.tasks.user_data import cifar10_resnet18, numpy_mlp
from optprobe.experiments.tasks.vision import (
    cnn_digits,
    mlp_digits,
    mnist1d_cnn,
    mnist1d_mlp,
    resnet_digits,
    tanh_cnn_digits,
    tanh_mlp_digits,
)

__all__ = [
    "TASKS", "LossFn", "Task", "Transformer", "bert_shakespeare", "build_task", "check_task_options",
    "cifar10_resnet18", "cnn_digits", "cross_entropy_loss", "gpt_shakespeare", "hf_bert", "hf_gpt2",
    "least_squares", "logistic_breast_cancer", "logistic_loss", "logistic_reference", "logistic_synthetic",
    "mlp_digits", "mnist1d_cnn", "mnist1d_mlp", "numpy_mlp", "onehot_squared_loss", "quadratic",
    "quadratic_loss", "register", "resnet_digits", "squared_loss", "tanh_cnn_digits", "tanh_mlp_digits",
    "task_options", "text_gpt",
]  # fmt: skip
