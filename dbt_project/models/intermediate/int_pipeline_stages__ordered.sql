-- The funnel of each pipeline (both CRMs): its open stages (the entry stage first, then the
-- regular stages by their sort), then won. Lost is not a funnel step. stage_order starts at 1.
with

stages as (

    select * from {{ ref('int_crm__pipeline_stages') }}
    where is_open_stage or is_won

),

ordered as (

    select
        crm,
        account,
        pipeline_id,
        pipeline_name,
        status_id,
        stage_name,
        stage_type,
        is_won,
        row_number() over (
            partition by crm, account, pipeline_id
            order by
                case when is_won then 2 when stage_type = 1 then 0 else 1 end,
                stage_sort,
                status_id
        ) as stage_order
    from stages

),

final as (

    select
        ordered.*,
        lead(status_id) over (
            partition by crm, account, pipeline_id order by stage_order
        ) as next_status_id
    from ordered

)

select * from final
