-- dim_customers: aov is revenue / orders_count to the cent (rounding moves it by at most half
-- a cent per order).
select customer_id, aov, orders_count, revenue
from {{ ref('dim_customers') }}
where abs(aov * orders_count - revenue) > 0.005 * orders_count
