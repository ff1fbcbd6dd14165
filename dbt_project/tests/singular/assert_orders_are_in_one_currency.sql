-- fct_orders holds one currency (the account's): the marts add amounts up, so a second
-- currency would be summed as if it were the first. Names each currency and its orders.
select currency, count(*) as orders
from {{ ref('fct_orders') }}
group by currency
having (select count(distinct currency) from {{ ref('fct_orders') }}) > 1
