-- The 'all' row of every month is the sum of the month's channel rows.
with

channels as (

    select
        month,
        sum(spend) as spend,
        sum(leads) as leads,
        sum(new_customers) as new_customers
    from {{ ref('fct_acquisition_monthly') }}
    where channel <> 'all'
    group by month

),

blended as (

    select month, spend, leads, new_customers
    from {{ ref('fct_acquisition_monthly') }}
    where channel = 'all'

)

select blended.month
from blended
full outer join channels
    on blended.month = channels.month
where blended.month is null
    or channels.month is null
    or abs(blended.spend - channels.spend) > 0.005
    or blended.leads <> channels.leads
    or blended.new_customers <> channels.new_customers
