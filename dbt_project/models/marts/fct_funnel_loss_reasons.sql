-- Drop-off by loss reason, additive: lost leads counted once, at the pipeline stage they were
-- in when they were lost (their last open stage), per loss reason (amoCRM loss_reason_name,
-- null for a lead lost without one; Bitrix24: the user field named by var
-- `bitrix24_loss_reason_field` when filled, else the failure stage it ended in, from
-- int_crm__leads_unioned), channel, manager and lead-creation month. Sum over any columns to
-- roll up.
with

dropped as (

    select * from {{ ref('int_lead_stage_reached') }}
    where dropped_off_here

),

final as (

    select
        crm,
        account,
        pipeline_id,
        pipeline_name,
        status_id as last_open_status_id,
        stage_name as last_open_stage_name,
        cast(stage_order as integer) as last_open_stage_order,
        loss_reason_name,
        channel,
        responsible_user_id,
        manager_name,
        created_month,
        cast(count(*) as bigint) as leads_lost
    from dropped
    group by
        crm, account, pipeline_id, pipeline_name, status_id, stage_name, stage_order,
        loss_reason_name, channel, responsible_user_id, manager_name, created_month

)

select * from final
