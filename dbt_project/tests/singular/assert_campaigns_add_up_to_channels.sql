-- The campaigns of an ad channel (matched and unmatched rows) add up to the channel's row in
-- fct_acquisition_monthly: spend, leads and new customers, every month.
with

campaigns as (

    select month, channel, sum(spend) as spend, sum(leads) as leads,
        sum(new_customers) as new_customers
    from {{ ref('fct_campaign_performance_monthly') }}
    group by month, channel

),

channels as (

    select month, channel, spend, leads, new_customers
    from {{ ref('fct_acquisition_monthly') }}
    where channel in (select distinct channel from {{ ref('fct_campaign_performance_monthly') }})

)

select
    coalesce(campaigns.month, channels.month) as month,
    coalesce(campaigns.channel, channels.channel) as channel,
    campaigns.spend as campaign_spend,
    channels.spend as channel_spend,
    campaigns.leads as campaign_leads,
    channels.leads as channel_leads,
    campaigns.new_customers as campaign_new_customers,
    channels.new_customers as channel_new_customers
from campaigns
full outer join channels
    on campaigns.month = channels.month
    and campaigns.channel = channels.channel
where abs(coalesce(campaigns.spend, 0) - coalesce(channels.spend, 0)) > 0.005
    or coalesce(campaigns.leads, 0) <> coalesce(channels.leads, 0)
    or coalesce(campaigns.new_customers, 0) <> coalesce(channels.new_customers, 0)
