-- One row per lead (amoCRM lead, Bitrix24 deal or unconverted Bitrix24 lead) created up to
-- the as-of date, with its current stage and its channel
-- (from the lead's own UTM tags; a customer's channel is their first lead's).
with

leads as (

    select * from {{ ref('int_leads__enriched') }}

),

kinds as (

    select lead_id, pipeline_kind, lead_kind, lead_kind_reason
    from {{ ref('int_lead_kinds') }}

),

final as (

    select
        leads.lead_id,
        crm,
        account,
        pipeline_id,
        status_id,
        stage_name,
        is_won,
        is_lost,
        is_open,
        created_at,
        created_month,
        closed_at,
        {{ money('amount') }} as amount,
        responsible_user_id,
        manager_name,
        loss_reason_name,
        utm_source,
        utm_medium,
        utm_campaign,
        channel,
        leads.company_id,
        leads.customer_id,
        kinds.pipeline_kind,
        kinds.lead_kind,
        kinds.lead_kind_reason
    from leads
    left join kinds
        on leads.lead_id = kinds.lead_id

)

select * from final
