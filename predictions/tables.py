"""The names and columns of the two prediction marts, apart from the models: readers (the
dashboard, segments) need them without loading scipy."""

PREDICTIONS_MODEL = "fct_customer_predictions"
FIT_MODEL = "fct_clv_model_fit"
# column DDL of the two tables, in the order customer_predictions / fit_table return them
PREDICTIONS_DDL = (
    "customer_id varchar not null, frequency double precision, recency_weeks double precision, "
    "t_weeks double precision, p_alive double precision, p_alive_30d_ago double precision, "
    "p_alive_change_30d double precision, expected_purchases_30d double precision, "
    "expected_purchases_90d double precision, expected_purchases_365d double precision, "
    "expected_order_value double precision, predicted_value_12m double precision, "
    "model_version varchar, fit_date date"
)
FIT_DDL = (
    "group_name varchar not null, customers integer, predicted_repeat_purchases double "
    "precision, actual_repeat_purchases double precision, relative_error double precision, "
    "model_version varchar, fit_date date, status varchar, message varchar, "
    "holdout_weeks integer, max_holdout_error double precision, holdout_error double "
    "precision, bgnbd_r double precision, bgnbd_alpha double precision, bgnbd_a double "
    "precision, bgnbd_b double precision, gg_p double precision, gg_q double precision, "
    "gg_v double precision, bgnbd_log_likelihood double precision, gg_log_likelihood double "
    "precision"
)


def ddl_columns(ddl: str) -> tuple[str, ...]:
    """The column names of a ``name type, name type`` list."""
    return tuple(part.strip().split()[0] for part in ddl.split(","))
