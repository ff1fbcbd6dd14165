-- fct_customer_value_monthly: every customer to date is either active or churned at the end
-- of the month, and nobody is active without being a customer to date.
select
    month,
    customers_to_date,
    active_customers,
    churned_customers
from {{ ref('fct_customer_value_monthly') }}
where churned_customers + active_customers <> customers_to_date
    or active_customers > customers_to_date
