-- The campaigns of an ad channel (matched and unmatched rows) add up to the channel's row in
-- fct_acquisition_monthly: spend, acquisition / repeat leads, new customers, attributed revenue and attributed gross
-- margin, every month.
with

campaigns as (

    select month, channel, sum(spend) as spend,
        sum(acquisition_leads) as acquisition_leads, sum(repeat_leads) as repeat_leads,
        sum(new_customers) as new_customers,
        sum(attributed_revenue) as attributed_revenue,
        sum(attributed_gross_margin) as attributed_gross_margin
    from {{ ref('fct_campaign_performance_monthly') }}
    group by month, channel

),

channels as (

    select month, channel, spend, acquisition_leads, repeat_leads, new_customers,
        attributed_revenue,
        attributed_gross_margin
    from {{ ref('fct_acquisition_monthly') }}
    where channel in (select distinct channel from {{ ref('fct_campaign_performance_monthly') }})

)

select
    coalesce(campaigns.month, channels.month) as month,
    coalesce(campaigns.channel, channels.channel) as channel,
    campaigns.spend as campaign_spend,
    channels.spend as channel_spend,
    campaigns.acquisition_leads as campaign_acquisition_leads,
    channels.acquisition_leads as channel_acquisition_leads,
    campaigns.repeat_leads as campaign_repeat_leads,
    channels.repeat_leads as channel_repeat_leads,
    campaigns.new_customers as campaign_new_customers,
    channels.new_customers as channel_new_customers,
    campaigns.attributed_revenue as campaign_attributed_revenue,
    channels.attributed_revenue as channel_attributed_revenue,
    campaigns.attributed_gross_margin as campaign_attributed_gross_margin,
    channels.attributed_gross_margin as channel_attributed_gross_margin
from campaigns
full outer join channels
    on campaigns.month = channels.month
    and campaigns.channel = channels.channel
where abs(coalesce(campaigns.spend, 0) - coalesce(channels.spend, 0)) > 0.005
    or coalesce(campaigns.acquisition_leads, 0) <> coalesce(channels.acquisition_leads, 0)
    or coalesce(campaigns.repeat_leads, 0) <> coalesce(channels.repeat_leads, 0)
    or coalesce(campaigns.new_customers, 0) <> coalesce(channels.new_customers, 0)
    or abs(coalesce(campaigns.attributed_revenue, 0) - coalesce(channels.attributed_revenue, 0))
        > 0.005
    or abs(coalesce(campaigns.attributed_gross_margin, 0)
           - coalesce(channels.attributed_gross_margin, 0)) > 0.005
