-- One row per month (first activity .. as-of month) and channel, plus channel 'all'
-- (blended: all spend, all leads, all new customers, organic included).
-- Leads (int_lead_kinds): acquisition_leads + repeat_leads = all_leads; a repeat lead is in a
-- repeat pipeline or from a customer with an earlier order.
--   cpl = spend / acquisition leads; cpl_all_leads = spend / all leads; cac = spend / new
--   customers (null, with cac_undefined = true, when there is spend and no new customer:
--   never divided by zero);
--   cv = new customers whose first lead, an acquisition lead, was created in the month /
--   acquisition leads created in it; cv_all_leads = new customers whose first lead (of any
--   kind) was created in the month / all leads created in it.
--   month_complete = the as-of date is after the month's last day; open_acquisition_lead_share
--   = the month's acquisition leads still open at the as-of date / acquisition leads;
--   cv_immature = that share > var('open_lead_share_max') (default 0.1).
-- Acquisition economics (the month is the period for ROMI and the cohort for LTV and payback):
--   attributed_revenue / _gross_margin = the month's revenue / gross margin of the channel's
--   customers (first touch), 'all' = every order of the month; romi = (attributed_revenue -
--   spend) / spend x 100 (null without spend); romi_gross the same with gross margin (each
--   order's own margin where the source has it, else amount x margin_rate), with
--   margin_known_share = attributed revenue with a source margin / attributed revenue;
--   ltv_horizon = the cohort's cumulative
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

as_of as (

    select as_of_date from {{ ref('int_as_of_date') }}

),

lead_kinds as (

    select * from {{ ref('int_lead_kinds') }}

),

leads as (

    select
        created_month as month,
        channel,
        sum(case when lead_kind = 'acquisition' then 1 else 0 end) as acquisition_leads,
        sum(case when lead_kind = 'repeat' then 1 else 0 end) as repeat_leads,
        count(*) as all_leads,
        sum(case when lead_kind = 'acquisition' and is_open then 1 else 0 end)
            as open_acquisition_leads
    from lead_kinds
    group by created_month, channel

),

new_customers as (

    select cohort_month as month, channel, count(*) as new_customers
    from {{ ref('dim_customers') }}
    group by cohort_month, channel

),

converted_leads as (

    -- by the first lead's own channel (a shop-first customer's channel is their first file
    -- order's), so the numerator counts leads of the row's denominator
    select
        {{ month_start('customers.first_lead_created_at') }} as month,
        coalesce(first_leads.channel, customers.channel) as channel,
        count(*) as customers_from_month_leads,
        sum(case when first_leads.lead_kind = 'acquisition' then 1 else 0 end)
            as customers_from_month_acquisition_leads
    from {{ ref('dim_customers') }} as customers
    left join lead_kinds as first_leads
        on customers.first_lead_id = first_leads.lead_id
    where customers.first_lead_created_at is not null
    group by {{ month_start('customers.first_lead_created_at') }},
        coalesce(first_leads.channel, customers.channel)

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
        coalesce(leads.acquisition_leads, 0) as acquisition_leads,
        coalesce(leads.repeat_leads, 0) as repeat_leads,
        coalesce(leads.all_leads, 0) as all_leads,
        coalesce(leads.open_acquisition_leads, 0) as open_acquisition_leads,
        coalesce(new_customers.new_customers, 0) as new_customers,
        coalesce(converted_leads.customers_from_month_leads, 0) as customers_from_month_leads,
        coalesce(converted_leads.customers_from_month_acquisition_leads, 0)
            as customers_from_month_acquisition_leads
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
        sum(acquisition_leads) as acquisition_leads,
        sum(repeat_leads) as repeat_leads,
        sum(all_leads) as all_leads,
        sum(open_acquisition_leads) as open_acquisition_leads,
        sum(new_customers) as new_customers,
        sum(customers_from_month_leads) as customers_from_month_leads,
        sum(customers_from_month_acquisition_leads) as customers_from_month_acquisition_leads
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
        sum(revenue_source_margin) as revenue_source_margin,
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
        sum(revenue_source_margin),
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
        sum(revenue_source_margin) as attributed_revenue_source_margin,
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

-- the share of the month's cohort's revenue to date that carries a source gross margin
-- (what cac_payback_months' gross margin rests on; the rest is amount x margin_rate)
cohort_margin as (

    select
        cohort_month as month,
        channel,
        {{ safe_divide('sum(revenue_source_margin)', 'sum(revenue)') }}
            as cohort_margin_known_share
    from cohort_value
    group by cohort_month, channel

),

economics as (

    select
        with_cac.*,
        {{ add_months('with_cac.month', 1) }} <= as_of.as_of_date as month_complete,
        {{ money('coalesce(attributed.attributed_revenue, 0)') }} as attributed_revenue,
        {{ money('coalesce(attributed.attributed_gross_margin, 0)') }} as attributed_gross_margin,
        coalesce(attributed.orders_margin_unknown, 0) = 0 as gross_margin_known,
        {{ safe_divide('attributed.attributed_revenue_source_margin',
                       'attributed.attributed_revenue') }} as margin_known_share,
        horizon.ltv_horizon,
        payback.cac_payback_months,
        cohort_margin.cohort_margin_known_share
    from with_cac
    cross join as_of
    left join attributed
        on with_cac.month = attributed.month and with_cac.channel = attributed.channel
    left join horizon
        on with_cac.month = horizon.month and with_cac.channel = horizon.channel
    left join payback
        on with_cac.month = payback.month and with_cac.channel = payback.channel
    left join cohort_margin
        on with_cac.month = cohort_margin.month and with_cac.channel = cohort_margin.channel

),

final as (

    select
        month,
        channel,
        {{ money('spend') }} as spend,
        cast(acquisition_leads as bigint) as acquisition_leads,
        cast(repeat_leads as bigint) as repeat_leads,
        cast(all_leads as bigint) as all_leads,
        cast(new_customers as bigint) as new_customers,
        -- cast outside the case: PostgreSQL drops the numeric(18, 2) typmod of a case
        cast(case when spend_covered then {{ money(safe_divide('spend', 'acquisition_leads')) }}
            end as numeric(18, 2)) as cpl,
        cast(case when spend_covered then {{ money(safe_divide('spend', 'all_leads')) }} end
            as numeric(18, 2)) as cpl_all_leads,
        cast(cac as numeric(18, 2)) as cac,
        {{ safe_divide('customers_from_month_acquisition_leads', 'acquisition_leads') }} as cv,
        {{ safe_divide('customers_from_month_leads', 'all_leads') }} as cv_all_leads,
        month_complete,
        {{ safe_divide('open_acquisition_leads', 'acquisition_leads') }}
            as open_acquisition_lead_share,
        coalesce({{ safe_divide('open_acquisition_leads', 'acquisition_leads') }}
                 > {{ var('open_lead_share_max') }}, false) as cv_immature,
        (spend_covered and spend > 0 and new_customers = 0) as cac_undefined,
        attributed_revenue,
        attributed_gross_margin,
        gross_margin_known,
        margin_known_share,
        case
            when spend_covered then {{ safe_divide('attributed_revenue - spend', 'spend') }} * 100
        end as romi,
        case
            when spend_covered
                then {{ safe_divide('attributed_gross_margin - spend', 'spend') }} * 100
        end as romi_gross,
        ltv_horizon,
        {{ safe_divide('ltv_horizon', 'cac') }} as ltv_cac,
        cast(cac_payback_months as integer) as cac_payback_months,
        cohort_margin_known_share,
        spend_covered
    from economics

)

select * from final
