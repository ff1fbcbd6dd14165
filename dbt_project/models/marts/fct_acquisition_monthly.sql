-- One row per month (first activity .. as-of month) and channel, plus channel 'all'
-- (blended: all spend, all leads, all new customers, organic included).
--   cpl = spend / leads; cac = spend / new customers (null, with cac_undefined = true, when
--   there is spend and no new customer: never divided by zero);
--   cv = new customers whose first lead was created in the month / leads created in it.
with

months as (

    select month from {{ ref('int_months') }}

),

spend as (

    select {{ month_start('spend_date') }} as month, channel, sum(spend) as spend
    from {{ ref('fct_ad_spend_daily') }}
    group by {{ month_start('spend_date') }}, channel

),

leads as (

    select created_month as month, channel, count(*) as leads
    from {{ ref('int_leads__enriched') }}
    group by created_month, channel

),

new_customers as (

    select cohort_month as month, channel, count(*) as new_customers
    from {{ ref('dim_customers') }}
    group by cohort_month, channel

),

converted_leads as (

    select
        {{ month_start('first_lead_created_at') }} as month,
        channel,
        count(*) as customers_from_month_leads
    from {{ ref('dim_customers') }}
    group by {{ month_start('first_lead_created_at') }}, channel

),

channels as (

    select channel from spend
    union
    select channel from leads
    union
    select channel from new_customers

),

per_channel as (

    select
        months.month,
        channels.channel,
        coalesce(spend.spend, 0) as spend,
        coalesce(leads.leads, 0) as leads,
        coalesce(new_customers.new_customers, 0) as new_customers,
        coalesce(converted_leads.customers_from_month_leads, 0) as customers_from_month_leads
    from months
    cross join channels
    left join spend
        on months.month = spend.month and channels.channel = spend.channel
    left join leads
        on months.month = leads.month and channels.channel = leads.channel
    left join new_customers
        on months.month = new_customers.month and channels.channel = new_customers.channel
    left join converted_leads
        on months.month = converted_leads.month and channels.channel = converted_leads.channel

),

blended as (

    select
        month,
        'all' as channel,
        sum(spend) as spend,
        sum(leads) as leads,
        sum(new_customers) as new_customers,
        sum(customers_from_month_leads) as customers_from_month_leads
    from per_channel
    group by month

),

unioned as (

    select * from per_channel
    union all
    select * from blended

),

final as (

    select
        month,
        channel,
        {{ money('spend') }} as spend,
        cast(leads as bigint) as leads,
        cast(new_customers as bigint) as new_customers,
        {{ money(safe_divide('spend', 'leads')) }} as cpl,
        {{ money(safe_divide('spend', 'new_customers')) }} as cac,
        {{ safe_divide('customers_from_month_leads', 'leads') }} as cv,
        (spend > 0 and new_customers = 0) as cac_undefined
    from unioned

)

select * from final
