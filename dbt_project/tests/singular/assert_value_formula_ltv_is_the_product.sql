-- fct_customer_value_monthly: formula_ltv = aov_12m x purchase_frequency_per_year x
-- expected_lifetime_years x margin_12m (the 12 months' gross margin / revenue; within rounding of aov_12m to cents), and the
-- expected lifetime never exceeds var ltv_max_lifetime_years.
select
    month,
    aov_12m,
    purchase_frequency_per_year,
    expected_lifetime_years,
    margin_12m,
    formula_ltv
from {{ ref('fct_customer_value_monthly') }}
where expected_lifetime_years > {{ var('ltv_max_lifetime_years', 5) }}
    or (formula_ltv is not null
        and abs(cast(formula_ltv as double precision)
                - cast(aov_12m as double precision) * purchase_frequency_per_year
                * expected_lifetime_years * margin_12m)
            > 0.01 * purchase_frequency_per_year * expected_lifetime_years
              * abs(margin_12m) + 0.01)
