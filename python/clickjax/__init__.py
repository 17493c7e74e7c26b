"""clickjax: click models for search-engine click logs, from raw files to trained models.

Raw logs are parsed in Rust into padded Arrow batches (`clickjax.data`), click models are Flax NNX
modules (`clickjax.models`), and `clickjax.training.Trainer` fits them by gradient descent on the exact
log-likelihood.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("clickjax")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from clickjax.data import ClickLog
from clickjax.data import Vocabulary
from clickjax.data import read_batches
from clickjax.metrics import Metrics
from clickjax.metrics import evaluate
from clickjax.models import DynamicBayesianNetwork
from clickjax.models import PositionBasedModel
from clickjax.models import UserBrowsingModel
from clickjax.predict import predict_clicks
from clickjax.predict import relevance
from clickjax.serialization import load_model
from clickjax.serialization import save_model
from clickjax.shards import ShardedLog
from clickjax.training import Trainer

__all__ = [
    "ClickLog",
    "DynamicBayesianNetwork",
    "Metrics",
    "PositionBasedModel",
    "ShardedLog",
    "Trainer",
    "UserBrowsingModel",
    "Vocabulary",
    "__version__",
    "evaluate",
    "load_model",
    "predict_clicks",
    "read_batches",
    "relevance",
    "save_model",
]
