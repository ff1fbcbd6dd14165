-- One row per lead of int_leads__enriched, classified acquisition | repeat
-- (docs: metrics.md "Acquisition"):
--   * repeat, reason `repeat_pipeline`: the lead's pipeline is `repeat` (int_pipeline_kinds);
--   * repeat, reason `existing_customer`: an acquisition-pipeline lead whose customer (after
--     identity resolution) has an order (int_orders) strictly before the lead was created
--     (ordered_at < created_at; a file order is at midnight of its local date). A lead's own
--     sale closes after it opens, so it never makes the lead repeat;
--   * acquisition, reason `new_inquiry`: every other lead.
with

leads as (

    select * from {{ ref('int_leads__enriched') }}

),

pipelines as (

    select * from {{ ref('int_pipeline_kinds') }}

),

-- the lead's state at the as-of date (events after it ignored)
outcomes as (

    select lead_id, outcome from {{ ref('int_lead_outcomes') }}

),

orders as (

    select customer_id, ordered_at from {{ ref('int_orders') }}

),

-- each customer's first order: an order before the lead exists iff the first one is
first_orders as (

    select customer_id, min(ordered_at) as first_ordered_at
    from orders
    group by customer_id

),

final as (

    select
        leads.lead_id,
        leads.crm,
        leads.account,
        leads.pipeline_id,
        leads.customer_id,
        leads.channel,
        leads.created_at,
        leads.created_month,
        coalesce(outcomes.outcome, 'open') = 'open' as is_open,
        coalesce(pipelines.pipeline_kind, 'acquisition') as pipeline_kind,
        case
            when pipelines.pipeline_kind = 'repeat' then 'repeat'
            when first_orders.first_ordered_at < leads.created_at then 'repeat'
            else 'acquisition'
        end as lead_kind,
        case
            when pipelines.pipeline_kind = 'repeat' then 'repeat_pipeline'
            when first_orders.first_ordered_at < leads.created_at then 'existing_customer'
            else 'new_inquiry'
        end as lead_kind_reason
    from leads
    left join pipelines
        on leads.crm = pipelines.crm
        and leads.account = pipelines.account
        and leads.pipeline_id = pipelines.pipeline_id
    left join first_orders
        on leads.customer_id = first_orders.customer_id
    left join outcomes
        on leads.lead_id = outcomes.lead_id

)

select * from final
