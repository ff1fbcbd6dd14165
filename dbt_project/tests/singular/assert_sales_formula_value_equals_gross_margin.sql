-- The sales formula reconciles: every month the product of the five factors (value) equals
-- the month's gross margin to the cent, and gross margin is the sum of the month's orders'
-- own gross margins (fct_orders.gross_margin: the source's margin, else amount x margin_rate).
-- value is null only in a month with orders and no leads (formula undefined); a month without
-- orders has value 0.
with

order_margins as (

    select order_month as month, sum(gross_margin) as gross_margin
    from {{ ref('fct_orders') }}
    group by order_month

)

select formula.month, formula.leads, formula.orders, formula.revenue, formula.gross_margin,
    formula.value
from {{ ref('fct_sales_formula_monthly') }} as formula
left join order_margins
    on formula.month = order_margins.month
where (formula.value is null and not (formula.leads = 0 and formula.orders > 0))
    or (formula.value is not null and formula.value <> formula.gross_margin)
    or (formula.orders = 0 and formula.value <> 0)
    or formula.gross_margin <> coalesce(order_margins.gross_margin, 0)
