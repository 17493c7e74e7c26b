"""Click models fitted by gradient descent on the exact log-likelihood of click logs.

`MODELS` maps the short names used on the command line to the model classes.
"""

from clickjax.models.base import ClickModel as ClickModel
from clickjax.models.dbn import DBN as DBN
from clickjax.models.dbn import DynamicBayesianNetwork as DynamicBayesianNetwork
from clickjax.models.pbm import PBM as PBM
from clickjax.models.pbm import PositionBasedModel as PositionBasedModel
from clickjax.models.ubm import UBM as UBM
from clickjax.models.ubm import UserBrowsingModel as UserBrowsingModel

MODELS: dict[str, type[ClickModel]] = {
    "pbm": PositionBasedModel,
    "ubm": UserBrowsingModel,
    "dbn": DynamicBayesianNetwork,
}
