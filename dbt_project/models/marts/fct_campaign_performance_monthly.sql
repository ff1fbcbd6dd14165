-- One row per month and ad campaign (every platform and offline files), with the leads and
-- new customers its UTM tags bring (int_touches__campaign_matched: a customer counts for the
-- campaign of their first touch — first lead, or first file order when they had no lead),
-- plus per channel one row with campaign_id null for touches that name no known campaign.
--   cpl = spend / leads; cac = spend / new customers (null, with cac_undefined = true, when
--   there is spend and no new customer). Leads count in their creation month, new customers
--   (first lead from the campaign) in their cohort month, as in fct_acquisition_monthly, so
--   the campaigns of a channel add up to its row there.
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

leads as (

    select
        enriched.created_month as month,
        matched.channel,
        matched.platform,
        matched.account,
        matched.campaign_id,
        count(*) as leads
    from matched
    inner join {{ ref('int_leads__enriched') }} as enriched
        on matched.touch_id = enriched.lead_id
    where matched.touch_kind = 'lead'
    group by enriched.created_month, matched.channel, matched.platform, matched.account,
        matched.campaign_id

),

new_customers as (

    select
        customers.cohort_month as month,
        matched.channel,
        matched.platform,
        matched.account,
        matched.campaign_id,
        count(*) as new_customers
    from {{ ref('dim_customers') }} as customers
    inner join {{ ref('int_customer_channel') }} as first_touches
        on customers.customer_id = first_touches.customer_id
    inner join matched
        on first_touches.first_touch = matched.touch_kind
        and first_touches.first_touch_id = matched.touch_id
    group by customers.cohort_month, matched.channel, matched.platform, matched.account,
        matched.campaign_id

),

-- one stack of every measure, summed per campaign (group by keeps the null-campaign rows
-- of unmatched touches together, which a join on nullable keys would not)
measures as (

    select month, channel, platform, account, campaign_id, spend, impressions, clicks,
        0 as leads, 0 as new_customers
    from spend
    union all
    select month, channel, platform, account, campaign_id, 0, 0, 0, leads, 0
    from leads
    union all
    select month, channel, platform, account, campaign_id, 0, 0, 0, 0, new_customers
    from new_customers

),

joined as (

    select
        month,
        channel,
        platform,
        account,
        campaign_id,
        sum(spend) as spend,
        sum(impressions) as impressions,
        sum(clicks) as clicks,
        sum(leads) as leads,
        sum(new_customers) as new_customers
    from measures
    group by month, channel, platform, account, campaign_id

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
        cast(joined.leads as bigint) as leads,
        cast(joined.new_customers as bigint) as new_customers,
        {{ money(safe_divide('joined.spend', 'joined.leads')) }} as cpl,
        {{ money(safe_divide('joined.spend', 'joined.new_customers')) }} as cac,
        joined.spend > 0 and joined.new_customers = 0 as cac_undefined
    from joined
    left join {{ ref('int_ad_campaigns') }} as campaigns
        on joined.channel = campaigns.channel
        and joined.platform = campaigns.platform
        and joined.account = campaigns.account
        and joined.campaign_id = campaigns.campaign_id

)

select * from final
