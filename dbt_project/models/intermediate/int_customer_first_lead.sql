-- One row per customer (anyone with a lead) with their first lead: first touch decides the
-- customer's channel. Ties on created_at go to the smaller lead id.
with

leads as (

    select * from {{ ref('int_leads__enriched') }}

),

ranked as (

    select
        customer_id,
        lead_id,
        created_at,
        channel,
        row_number() over (partition by customer_id order by created_at, lead_id) as lead_rank
    from leads

),

final as (

    select
        customer_id,
        lead_id as first_lead_id,
        created_at as first_lead_created_at,
        {{ month_start('created_at') }} as first_lead_month,
        channel
    from ranked
    where lead_rank = 1

)

select * from final
