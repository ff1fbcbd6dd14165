-- Every customer orders in their cohort month, so retention at offset 0 is 1 by construction,
-- and the cohort sizes add up to the number of customers.
select cohort_month, retention_rate
from {{ ref('fct_cohort_retention') }}
where month_offset = 0
    and (retention_rate is null or abs(retention_rate - 1) > 1e-9)

union all

select null, null
from (select sum(cohort_size) as customers from {{ ref('fct_cohort_retention') }}
      where month_offset = 0) as cohorts
cross join (select count(*) as customers from {{ ref('dim_customers') }}) as dim
where coalesce(cohorts.customers, 0) <> dim.customers
