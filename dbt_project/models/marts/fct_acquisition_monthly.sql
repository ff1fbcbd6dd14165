-- One row per month (first activity .. as-of month) and channel, plus channel 'all'
-- (blended: all spend, all leads, all new customers, organic included).
--   cpl = spend / leads; cac = spend / new customers (null, with cac_undefined = true, when
--   there is spend and no new customer: never divided by zero);
--   cv = new customers whose first lead was created in the month / leads created in it.
-- Acquisition economics (the month is the period for ROMI and the cohort for LTV and payback):
--   attributed_revenue / _gross_margin = the month's revenue / gross margin of the channel's
--   customers (first touch), 'all' = every order of the month; romi = (attributed_revenue -
--   spend) / spend x 100 (null without spend); romi_gross the same with gross margin, only
--   when every attributed order's margin is known; ltv_horizon = the cohort's cumulative
--   revenue through month cohort + var('ltv_horizon_months') / cohort size, once that month
--   is complete; ltv_cac = ltv_horizon / cac; cac_payback_months = the first offset k at which
--   the cohort's cumulative gross margin per customer reaches cac.
-- Spend coverage (int_ad_spend_coverage): a channel-month that starts before an account of
-- the channel is covered_from (a history cut by the platform's horizon, e.g. VK Ads 366 days)
-- has spend_covered = false and null cpl, cac, romi, romi_gross, ltv_cac and payback: never
-- computed from a partial spend. The `all` row is uncovered when any channel is.
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

-- the day from which each channel's spend is complete (null: from the start)
coverage as (

    select channel, max(covered_from) as covered_from
    from {{ ref('int_ad_spend_coverage') }}
    group by channel

),

-- the first day from which every channel's spend is complete (the blended row's)
all_coverage as (

    select 'all' as channel, max(covered_from) as covered_from
    from coverage

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

-- a channel-month is covered when it starts on or after its channel's covered_from; the
-- blended row when it does for every channel
covered as (

    select
        unioned.*,
        coalesce(unioned.month >= coalesce(coverage.covered_from, all_coverage.covered_from),
                 true) as spend_covered
    from unioned
    left join coverage
        on unioned.channel = coverage.channel
    left join all_coverage
        on unioned.channel = all_coverage.channel

),

with_cac as (

    select
        covered.*,
        case
            when spend_covered then {{ money(safe_divide('spend', 'new_customers')) }}
        end as cac
    from covered

),

cohort_groups as (

    select * from {{ ref('int_cohort_value_by_offset') }}

),

-- the cohort value curve per channel and for all channels together (dense in month_offset,
-- so the running totals add up across groups at each offset)
cohort_value as (

    select
        cohort_month, channel, month_offset, activity_month, month_complete,
        sum(cohort_size) as cohort_size,
        sum(revenue) as revenue,
        sum(gross_margin) as gross_margin,
        sum(orders_margin_unknown) as orders_margin_unknown,
        sum(cumulative_revenue) as cumulative_revenue,
        sum(cumulative_gross_margin) as cumulative_gross_margin
    from cohort_groups
    group by cohort_month, channel, month_offset, activity_month, month_complete
    union all
    select
        cohort_month, 'all', month_offset, activity_month, month_complete,
        sum(cohort_size),
        sum(revenue),
        sum(gross_margin),
        sum(orders_margin_unknown),
        sum(cumulative_revenue),
        sum(cumulative_gross_margin)
    from cohort_groups
    group by cohort_month, month_offset, activity_month, month_complete

),

-- revenue of the month from every cohort: attributed to the customers' first-touch channel
attributed as (

    select
        activity_month as month,
        channel,
        sum(revenue) as attributed_revenue,
        sum(gross_margin) as attributed_gross_margin,
        sum(orders_margin_unknown) as orders_margin_unknown
    from cohort_value
    group by activity_month, channel

),

-- the month's cohort at offset var('ltv_horizon_months'); no row until that month exists
horizon as (

    select
        cohort_month as month,
        channel,
        -- cast outside the case: PostgreSQL drops the numeric(18, 2) typmod of a case
        cast(case
            when month_complete then {{ money(safe_divide('cumulative_revenue', 'cohort_size')) }}
        end as numeric(18, 2)) as ltv_horizon
    from cohort_value
    where month_offset = {{ var('ltv_horizon_months') }}

),

-- first offset whose cumulative gross margin per customer (in cents, as published) reaches
-- the cohort's cac
payback as (

    select
        cohort_value.cohort_month as month,
        cohort_value.channel,
        min(cohort_value.month_offset) as cac_payback_months
    from cohort_value
    inner join with_cac
        on cohort_value.cohort_month = with_cac.month
        and cohort_value.channel = with_cac.channel
    where with_cac.cac is not null
        and {{ money(safe_divide('cohort_value.cumulative_gross_margin', 'cohort_value.cohort_size')) }}
            >= with_cac.cac
    group by cohort_value.cohort_month, cohort_value.channel

),

economics as (

    select
        with_cac.*,
        {{ money('coalesce(attributed.attributed_revenue, 0)') }} as attributed_revenue,
        {{ money('coalesce(attributed.attributed_gross_margin, 0)') }} as attributed_gross_margin,
        coalesce(attributed.orders_margin_unknown, 0) = 0 as gross_margin_known,
        horizon.ltv_horizon,
        payback.cac_payback_months
    from with_cac
    left join attributed
        on with_cac.month = attributed.month and with_cac.channel = attributed.channel
    left join horizon
        on with_cac.month = horizon.month and with_cac.channel = horizon.channel
    left join payback
        on with_cac.month = payback.month and with_cac.channel = payback.channel

),

final as (

    select
        month,
        channel,
        {{ money('spend') }} as spend,
        cast(leads as bigint) as leads,
        cast(new_customers as bigint) as new_customers,
        -- cast outside the case: PostgreSQL drops the numeric(18, 2) typmod of a case
        cast(case when spend_covered then {{ money(safe_divide('spend', 'leads')) }} end
            as numeric(18, 2)) as cpl,
        cast(cac as numeric(18, 2)) as cac,
        {{ safe_divide('customers_from_month_leads', 'leads') }} as cv,
        (spend_covered and spend > 0 and new_customers = 0) as cac_undefined,
        attributed_revenue,
        attributed_gross_margin,
        gross_margin_known,
        case
            when spend_covered then {{ safe_divide('attributed_revenue - spend', 'spend') }} * 100
        end as romi,
        case
            when spend_covered and gross_margin_known
                then {{ safe_divide('attributed_gross_margin - spend', 'spend') }} * 100
        end as romi_gross,
        ltv_horizon,
        {{ safe_divide('ltv_horizon', 'cac') }} as ltv_cac,
        cast(cac_payback_months as integer) as cac_payback_months,
        spend_covered
    from economics

)

select * from final
