-- Each customer has exactly one first order, on their first_order_date.
select dim.customer_id
from {{ ref('dim_customers') }} as dim
left join {{ ref('fct_orders') }} as orders
    on dim.customer_id = orders.customer_id
    and orders.is_first_order
group by dim.customer_id, dim.first_order_date
having count(orders.order_id) <> 1 or min(orders.order_date) <> dim.first_order_date
