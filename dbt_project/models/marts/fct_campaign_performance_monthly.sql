-- One row per month and ad campaign (every platform and offline files), with the leads and
-- new customers its UTM tags bring (int_touches__campaign_matched: a customer counts for the
-- campaign of their first touch — first lead, or first file order when they had no lead),
-- plus per channel one row with campaign_id null for touches that name no known campaign.
--   Leads split as in fct_acquisition_monthly (int_lead_kinds): acquisition_leads +
--   repeat_leads = all_leads. cpl = spend / acquisition leads, cpl_all_leads = spend / all
--   leads; cac = spend / new customers (null, with cac_undefined = true, when there is spend
--   and no new customer); cv = the campaign's customers whose first lead, an acquisition lead
--   from the campaign, was created in the month / acquisition leads; cv_all_leads = its
--   customers whose first lead (any kind) was created in the month / all leads. Leads count in
--   their creation month, new customers in their cohort month, as in fct_acquisition_monthly,
--   so the campaigns of a channel add up to its row there. month_complete,
--   open_acquisition_lead_share and cv_immature as there.
-- Acquisition economics, as in fct_acquisition_monthly, with a customer's campaign = the
-- campaign of their first touch (int_customer_acquisition, the assignment both marts share):
--   attributed_revenue / _gross_margin = the month's revenue / gross margin of the campaign's
--   customers; romi = (attributed_revenue - spend) / spend x 100 (null without spend);
--   romi_gross likewise with gross margin (source margins, margin_rate for the rest;
--   margin_known_share = attributed revenue with a source margin / attributed revenue);
--   ltv_horizon = the month's cohort's cumulative revenue through month cohort +
--   var('ltv_horizon_months') / new customers, once that month is complete; ltv_cac =
--   ltv_horizon / cac; cac_payback_months = first offset at which cumulative gross margin per
--   cohort customer reaches cac.
-- Spend coverage (int_ad_spend_coverage): a campaign-month that starts before its account's
-- covered_from (the unmatched row: any account of its channel) has spend_covered = false and
-- null cpl, cac, romi, romi_gross, ltv_cac and payback, as in fct_acquisition_monthly.
with

spend as (

    select
        {{ month_start('spend_date') }} as month,
        channel,
        platform,
        account,
        campaign_id,
        sum(spend) as spend,
        sum(impressions) as impressions,
        sum(clicks) as clicks
    from {{ ref('fct_ad_spend_daily') }}
    group by {{ month_start('spend_date') }}, channel, platform, account, campaign_id

),

matched as (

    select * from {{ ref('int_touches__campaign_matched') }}

),

as_of as (

    select as_of_date from {{ ref('int_as_of_date') }}

),

lead_kinds as (

    select * from {{ ref('int_lead_kinds') }}

),

leads as (

    select
        kinds.created_month as month,
        matched.channel,
        matched.platform,
        matched.account,
        matched.campaign_id,
        sum(case when kinds.lead_kind = 'acquisition' then 1 else 0 end) as acquisition_leads,
        sum(case when kinds.lead_kind = 'repeat' then 1 else 0 end) as repeat_leads,
        count(*) as all_leads,
        sum(case when kinds.lead_kind = 'acquisition' and kinds.is_open then 1 else 0 end)
            as open_acquisition_leads
    from matched
    inner join lead_kinds as kinds
        on matched.touch_id = kinds.lead_id
    where matched.touch_kind = 'lead'
    group by kinds.created_month, matched.channel, matched.platform, matched.account,
        matched.campaign_id

),

acquired as (

    select * from {{ ref('int_customer_acquisition') }}
    where is_ad_touch

),

-- the campaign's customers by the month of their first lead (Cv's numerator)
converted_leads as (

    select
        first_leads.created_month as month,
        acquired.channel,
        acquired.platform,
        acquired.account,
        acquired.campaign_id,
        count(*) as customers_from_month_leads,
        sum(case when first_leads.lead_kind = 'acquisition' then 1 else 0 end)
            as customers_from_month_acquisition_leads
    from acquired
    inner join lead_kinds as first_leads
        on acquired.first_touch_id = first_leads.lead_id
    where acquired.first_touch = 'lead'
    group by first_leads.created_month, acquired.channel, acquired.platform, acquired.account,
        acquired.campaign_id

),

new_customers as (

    select
        cohort_month as month,
        channel,
        platform,
        account,
        campaign_id,
        count(*) as new_customers
    from acquired
    group by cohort_month, channel, platform, account, campaign_id

),

-- the cohort value curve of the ad-touch groups (one campaign or one unmatched bucket each)
cohort_value as (

    select * from {{ ref('int_cohort_value_by_offset') }}
    where is_ad_touch

),

-- revenue of the month from every cohort, attributed to the customers' first-touch campaign
-- (months with orders only: the mart keeps a row per campaign and month with any activity)
attributed as (

    select
        activity_month as month,
        channel,
        platform,
        account,
        campaign_id,
        sum(revenue) as attributed_revenue,
        sum(revenue_source_margin) as attributed_revenue_source_margin,
        sum(gross_margin) as attributed_gross_margin,
        sum(orders_margin_unknown) as orders_margin_unknown
    from cohort_value
    where orders > 0
    group by activity_month, channel, platform, account, campaign_id

),

-- one stack of every measure, summed per campaign (group by keeps the null-campaign rows
-- of unmatched touches together, which a join on nullable keys would not)
measures as (

    select month, channel, platform, account, campaign_id, spend, impressions, clicks,
        0 as acquisition_leads, 0 as repeat_leads, 0 as all_leads, 0 as open_acquisition_leads,
        0 as customers_from_month_leads, 0 as customers_from_month_acquisition_leads,
        0 as new_customers, 0 as attributed_revenue, 0 as attributed_revenue_source_margin,
        0 as attributed_gross_margin, 0 as orders_margin_unknown
    from spend
    union all
    select month, channel, platform, account, campaign_id, 0, 0, 0, acquisition_leads,
        repeat_leads, all_leads, open_acquisition_leads, 0, 0, 0, 0, 0, 0, 0
    from leads
    union all
    select month, channel, platform, account, campaign_id, 0, 0, 0, 0, 0, 0, 0,
        customers_from_month_leads, customers_from_month_acquisition_leads, 0, 0, 0, 0, 0
    from converted_leads
    union all
    select month, channel, platform, account, campaign_id, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        new_customers, 0, 0, 0, 0
    from new_customers
    union all
    select month, channel, platform, account, campaign_id, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        attributed_revenue, attributed_revenue_source_margin, attributed_gross_margin,
        orders_margin_unknown
    from attributed

),

summed as (

    select
        month,
        channel,
        platform,
        account,
        campaign_id,
        sum(spend) as spend,
        sum(impressions) as impressions,
        sum(clicks) as clicks,
        sum(acquisition_leads) as acquisition_leads,
        sum(repeat_leads) as repeat_leads,
        sum(all_leads) as all_leads,
        sum(open_acquisition_leads) as open_acquisition_leads,
        sum(customers_from_month_leads) as customers_from_month_leads,
        sum(customers_from_month_acquisition_leads) as customers_from_month_acquisition_leads,
        sum(new_customers) as new_customers,
        sum(attributed_revenue) as attributed_revenue,
        sum(attributed_revenue_source_margin) as attributed_revenue_source_margin,
        sum(attributed_gross_margin) as attributed_gross_margin,
        sum(orders_margin_unknown) as orders_margin_unknown
    from measures
    group by month, channel, platform, account, campaign_id

),

-- the day from which each account's (and each channel's) spend is complete; null: from
-- the start
account_coverage as (

    select channel, platform, account, max(covered_from) as covered_from
    from {{ ref('int_ad_spend_coverage') }}
    group by channel, platform, account

),

channel_coverage as (

    select channel, max(covered_from) as covered_from
    from account_coverage
    group by channel

),

covered as (

    select
        summed.*,
        coalesce(
            summed.month >= case
                when summed.platform is null then channel_coverage.covered_from
                else account_coverage.covered_from
            end,
            true
        ) as spend_covered
    from summed
    left join account_coverage
        on summed.channel = account_coverage.channel
        and summed.platform = account_coverage.platform
        and summed.account = account_coverage.account
    left join channel_coverage
        on summed.channel = channel_coverage.channel

),

joined as (

    select
        covered.*,
        case
            when spend_covered then {{ money(safe_divide('spend', 'new_customers')) }}
        end as cac
    from covered

),

-- the month's cohort at offset var('ltv_horizon_months'); no row until that month exists
-- (nullable campaign keys: `is not distinct from` keeps the unmatched buckets joined)
horizon as (

    select
        cohort_month as month,
        channel,
        platform,
        account,
        campaign_id,
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
        joined.month,
        joined.channel,
        joined.platform,
        joined.account,
        joined.campaign_id,
        min(cohort_value.month_offset) as cac_payback_months
    from joined
    inner join cohort_value
        on joined.month = cohort_value.cohort_month
        and joined.channel = cohort_value.channel
        and joined.platform is not distinct from cohort_value.platform
        and joined.account is not distinct from cohort_value.account
        and joined.campaign_id is not distinct from cohort_value.campaign_id
    where joined.cac is not null
        and {{ money(safe_divide('cohort_value.cumulative_gross_margin', 'cohort_value.cohort_size')) }}
            >= joined.cac
    group by joined.month, joined.channel, joined.platform, joined.account, joined.campaign_id

),

-- the share of the month's cohort's revenue to date with a source gross margin (payback)
cohort_margin as (

    select
        cohort_month as month,
        channel,
        platform,
        account,
        campaign_id,
        {{ safe_divide('sum(revenue_source_margin)', 'sum(revenue)') }}
            as cohort_margin_known_share
    from cohort_value
    group by cohort_month, channel, platform, account, campaign_id

),

final as (

    select
        joined.month,
        joined.channel,
        joined.platform,
        joined.account,
        joined.campaign_id,
        campaigns.campaign_name,
        {{ money('joined.spend') }} as spend,
        cast(joined.impressions as bigint) as impressions,
        cast(joined.clicks as bigint) as clicks,
        cast(joined.acquisition_leads as bigint) as acquisition_leads,
        cast(joined.repeat_leads as bigint) as repeat_leads,
        cast(joined.all_leads as bigint) as all_leads,
        cast(joined.new_customers as bigint) as new_customers,
        cast(case
            when joined.spend_covered
                then {{ money(safe_divide('joined.spend', 'joined.acquisition_leads')) }}
        end as numeric(18, 2)) as cpl,
        cast(case
            when joined.spend_covered
                then {{ money(safe_divide('joined.spend', 'joined.all_leads')) }}
        end as numeric(18, 2)) as cpl_all_leads,
        cast(joined.cac as numeric(18, 2)) as cac,
        {{ safe_divide('joined.customers_from_month_acquisition_leads',
                       'joined.acquisition_leads') }} as cv,
        {{ safe_divide('joined.customers_from_month_leads', 'joined.all_leads') }}
            as cv_all_leads,
        {{ add_months('joined.month', 1) }} <= as_of.as_of_date as month_complete,
        {{ safe_divide('joined.open_acquisition_leads', 'joined.acquisition_leads') }}
            as open_acquisition_lead_share,
        coalesce({{ safe_divide('joined.open_acquisition_leads', 'joined.acquisition_leads') }}
                 > {{ var('open_lead_share_max') }}, false) as cv_immature,
        joined.spend_covered and joined.spend > 0 and joined.new_customers = 0 as cac_undefined,
        {{ money('joined.attributed_revenue') }} as attributed_revenue,
        {{ money('joined.attributed_gross_margin') }} as attributed_gross_margin,
        joined.orders_margin_unknown = 0 as gross_margin_known,
        {{ safe_divide('joined.attributed_revenue_source_margin', 'joined.attributed_revenue') }}
            as margin_known_share,
        case
            when joined.spend_covered
                then {{ safe_divide('joined.attributed_revenue - joined.spend', 'joined.spend') }}
                    * 100
        end as romi,
        case
            when joined.spend_covered
                then {{ safe_divide('joined.attributed_gross_margin - joined.spend', 'joined.spend') }} * 100
        end as romi_gross,
        horizon.ltv_horizon,
        {{ safe_divide('horizon.ltv_horizon', 'joined.cac') }} as ltv_cac,
        cast(payback.cac_payback_months as integer) as cac_payback_months,
        cohort_margin.cohort_margin_known_share,
        joined.spend_covered
    from joined
    cross join as_of
    left join horizon
        on joined.month = horizon.month
        and joined.channel = horizon.channel
        and joined.platform is not distinct from horizon.platform
        and joined.account is not distinct from horizon.account
        and joined.campaign_id is not distinct from horizon.campaign_id
    left join payback
        on joined.month = payback.month
        and joined.channel = payback.channel
        and joined.platform is not distinct from payback.platform
        and joined.account is not distinct from payback.account
        and joined.campaign_id is not distinct from payback.campaign_id
    left join cohort_margin
        on joined.month = cohort_margin.month
        and joined.channel = cohort_margin.channel
        and joined.platform is not distinct from cohort_margin.platform
        and joined.account is not distinct from cohort_margin.account
        and joined.campaign_id is not distinct from cohort_margin.campaign_id
    left join {{ ref('int_ad_campaigns') }} as campaigns
        on joined.channel = campaigns.channel
        and joined.platform = campaigns.platform
        and joined.account = campaigns.account
        and joined.campaign_id = campaigns.campaign_id

)

select * from final
