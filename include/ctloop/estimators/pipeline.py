"""The scikit-learn pipeline, built from the dataset contract: impute + scale numeric columns,
impute + one-hot categorical columns (unknown categories ignored), then the model named in params."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctloop.core.errors import ConfigError

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from ctloop.core.params import DatasetSpec

MODELS = ("logistic_regression", "hist_gradient_boosting")


def build_pipeline(contract: DatasetSpec, model: str, hyperparameters: dict[str, Any] | None = None,
                   seed: int = 42) -> Pipeline:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    hp = dict(hyperparameters or {})
    if model == "logistic_regression":
        estimator: Any = LogisticRegression(random_state=seed, **hp)
    elif model == "hist_gradient_boosting":
        estimator = HistGradientBoostingClassifier(random_state=seed, **hp)
    else:
        raise ConfigError(f"training.model: unknown model {model!r}; expected one of {', '.join(MODELS)}")
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline([
        ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
    ])
    features = ColumnTransformer(
        [("numeric", numeric, contract.numeric_features),
         ("categorical", categorical, contract.categorical_features)],
        remainder="drop",
    )
    return Pipeline([("features", features), ("model", estimator)])
