-- The sales formula reconciles: every month the product of the five factors (value) equals
-- the month's gross margin to the cent, and gross margin is revenue x margin_rate rounded to
-- the cent. value is null only in a month with orders and no leads (formula undefined); a
-- month without orders has value 0.
select month, leads, orders, revenue, gross_margin, value
from {{ ref('fct_sales_formula_monthly') }}
where (value is null and not (leads = 0 and orders > 0))
    or (value is not null and value <> gross_margin)
    or (orders = 0 and value <> 0)
    -- rounded to the cent: off by at most half a cent (plus the double margin_rate's error)
    or abs(gross_margin - revenue * margin_rate) > 0.00501
