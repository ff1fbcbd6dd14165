-- One row per stage of every sales funnel in both CRMs, keyed like int_crm__leads_unioned:
-- amoCRM (pipeline id, status id); Bitrix24 deal stages per category (`deal_<n>`, STAGE_ID
-- with its `C<n>:` prefix) and the lead statuses (`lead`). stage_type 1 marks the entry
-- stage (amoCRM's incoming leads), which the funnel puts first.
with

amocrm as (

    select
        'amocrm' as crm,
        account,
        cast(pipeline_id as varchar) as pipeline_id,
        pipeline_name,
        cast(status_id as varchar) as status_id,
        stage_name,
        stage_sort,
        stage_type,
        is_won,
        is_lost,
        is_open_stage
    from {{ ref('stg_amocrm__pipeline_statuses') }}

),

b24_stages as (

    select * from {{ ref('stg_bitrix24__stages') }}

),

b24_categories as (

    select * from {{ ref('stg_bitrix24__categories') }}

),

bitrix24 as (

    select
        'bitrix24' as crm,
        b24_stages.account,
        case
            when b24_stages.entity_id = 'STATUS' then 'lead'
            else 'deal_' || cast(b24_stages.category_id as varchar)
        end as pipeline_id,
        case
            when b24_stages.entity_id = 'STATUS' then 'Лиды'
            else coalesce(b24_categories.category_name,
                          'Category ' || cast(b24_stages.category_id as varchar))
        end as pipeline_name,
        b24_stages.status_id,
        b24_stages.stage_name,
        b24_stages.stage_sort,
        0 as stage_type,
        b24_stages.is_won,
        b24_stages.is_lost,
        b24_stages.is_open_stage
    from b24_stages
    left join b24_categories
        on b24_stages.account = b24_categories.account
        and b24_stages.category_id = b24_categories.category_id
    where b24_stages.entity_id = 'STATUS' or b24_stages.entity_id like 'DEAL_STAGE%'

),

unioned as (

    select * from amocrm
    union all
    select * from bitrix24

)

select * from unioned
