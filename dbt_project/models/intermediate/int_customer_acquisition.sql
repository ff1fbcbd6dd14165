-- One row per customer (dim_customers): how they were acquired. cohort_month = month of the
-- first order; channel = first touch (int_customer_channel). When the first touch is a touch of
-- an ad channel (a row of int_touches__campaign_matched), is_ad_touch is true and the campaign
-- columns hold the campaign its UTM tags name, null when they name none (the channel's
-- "unmatched" bucket). fct_acquisition_monthly and fct_campaign_performance_monthly both read
-- customers from here, so a channel's campaigns add up to the channel.
with

customers as (

    select customer_id, cohort_month, channel from {{ ref('dim_customers') }}

),

first_touches as (

    select customer_id, first_touch, first_touch_id from {{ ref('int_customer_channel') }}

),

matched as (

    select * from {{ ref('int_touches__campaign_matched') }}

),

final as (

    select
        customers.customer_id,
        customers.cohort_month,
        customers.channel,
        first_touches.first_touch,
        first_touches.first_touch_id,
        matched.touch_id is not null as is_ad_touch,
        matched.platform,
        matched.account,
        matched.campaign_id
    from customers
    left join first_touches
        on customers.customer_id = first_touches.customer_id
    left join matched
        on first_touches.first_touch = matched.touch_kind
        and first_touches.first_touch_id = matched.touch_id

)

select * from final
