-- The month-over-month log decomposition adds up: where value_log_change is defined, the
-- five contributions ln(f1/f0) are all defined and sum to ln(V1/V0); where it is not (V is
-- 0 or null in either month, or the first month), at least one contribution is null.
select
    month,
    value_log_change,
    contribution_leads + contribution_cv + contribution_aov
        + contribution_orders_per_customer + contribution_margin as contributions
from {{ ref('fct_sales_formula_monthly') }}
where (value_log_change is not null
        and (contribution_leads + contribution_cv + contribution_aov
                + contribution_orders_per_customer + contribution_margin is null
            or abs(contribution_leads + contribution_cv + contribution_aov
                    + contribution_orders_per_customer + contribution_margin
                    - value_log_change) > 1e-9))
    or (value_log_change is null
        and contribution_leads is not null
        and contribution_cv is not null
        and contribution_aov is not null
        and contribution_orders_per_customer is not null
        and contribution_margin is not null)
