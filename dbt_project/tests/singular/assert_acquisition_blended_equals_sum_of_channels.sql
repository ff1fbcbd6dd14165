-- The 'all' row of every month is the sum of the month's channel rows.
with

channels as (

    select
        month,
        sum(spend) as spend,
        sum(acquisition_leads) as acquisition_leads,
        sum(repeat_leads) as repeat_leads,
        sum(all_leads) as all_leads,
        sum(new_customers) as new_customers
    from {{ ref('fct_acquisition_monthly') }}
    where channel <> 'all'
    group by month

),

blended as (

    select month, spend, acquisition_leads, repeat_leads, all_leads, new_customers
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
    or blended.acquisition_leads <> channels.acquisition_leads
    or blended.repeat_leads <> channels.repeat_leads
    or blended.all_leads <> channels.all_leads
    or blended.all_leads <> blended.acquisition_leads + blended.repeat_leads
    or blended.new_customers <> channels.new_customers
