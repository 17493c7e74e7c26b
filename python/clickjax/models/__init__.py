"""Click models fitted by gradient descent on the exact log-likelihood of click logs.

`MODELS` maps the short names used on the command line to the model classes. `Mixture` combines
several models with learned weights and is built from components, so it has no short name.
"""

from clickjax.models.base import ClickModel as ClickModel
from clickjax.models.ccm import CCM as CCM
from clickjax.models.ccm import ClickChainModel as ClickChainModel
from clickjax.models.cm import CM as CM
from clickjax.models.cm import CascadeModel as CascadeModel
from clickjax.models.ctr import DCTR as DCTR
from clickjax.models.ctr import GCTR as GCTR
from clickjax.models.ctr import RCTR as RCTR
from clickjax.models.ctr import DocumentClickThroughRateModel as DocumentClickThroughRateModel
from clickjax.models.ctr import GlobalClickThroughRateModel as GlobalClickThroughRateModel
from clickjax.models.ctr import RankClickThroughRateModel as RankClickThroughRateModel
from clickjax.models.dbn import DBN as DBN
from clickjax.models.dbn import SDBN as SDBN
from clickjax.models.dbn import DynamicBayesianNetwork as DynamicBayesianNetwork
from clickjax.models.dbn import SimplifiedDynamicBayesianNetwork as SimplifiedDynamicBayesianNetwork
from clickjax.models.dcm import DCM as DCM
from clickjax.models.dcm import DependentClickModel as DependentClickModel
from clickjax.models.mixture import Mixture as Mixture
from clickjax.models.pbm import PBM as PBM
from clickjax.models.pbm import PositionBasedModel as PositionBasedModel
from clickjax.models.ubm import UBM as UBM
from clickjax.models.ubm import UserBrowsingModel as UserBrowsingModel

MODELS: dict[str, type[ClickModel]] = {
    "gctr": GlobalClickThroughRateModel,
    "rctr": RankClickThroughRateModel,
    "dctr": DocumentClickThroughRateModel,
    "pbm": PositionBasedModel,
    "cm": CascadeModel,
    "ubm": UserBrowsingModel,
    "dcm": DependentClickModel,
    "ccm": ClickChainModel,
    "dbn": DynamicBayesianNetwork,
    "sdbn": SimplifiedDynamicBayesianNetwork,
}
